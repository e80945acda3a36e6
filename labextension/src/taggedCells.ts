/**
 * Tagged cells: run the cells tagged `ms-eval` or `ms-finetune` (or any tag) from the notebook toolbar, from the
 * command `ms-notebook:run-tagged-cell` ({tag, path?}), or on request from the kernel.
 *
 * Kernel contract (comm target "ms-notebook", registered on every notebook's kernel; the kernel side is
 * ms_notebook.widgets.frontend):
 *   kernel -> lab  {"action": "hello"}                   lab answers {"action": "hello", "version": 1, "tags": {...}}
 *   kernel -> lab  {"action": "run-tagged", "tag": "t"}  lab runs the notebook's cells tagged t in order and answers
 *                                                         {"action": "ran", "tag": "t", "cells": n} (n may be 0)
 * Requests come as the data of comm_open or of later comm messages on the same comm. Without this extension
 * JupyterLab closes the comm, so the kernel knows to keep working on its own.
 */
import { CommandRegistry } from '@lumino/commands';
import { Menu } from '@lumino/widgets';
import { ToolbarButton } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

export const RUN_TAGGED = 'ms-notebook:run-tagged-cell';
export const COMM_TARGET = 'ms-notebook';
export const KNOWN_TAGS = ['ms-eval', 'ms-finetune'];

function tagsOf(panel: NotebookPanel, index: number): string[] {
  const model = panel.content.widgets[index]?.model;
  const tags = model?.getMetadata('tags');
  return Array.isArray(tags) ? (tags as string[]) : [];
}

/** Indexes of the code cells tagged `tag`, in notebook order. */
export function taggedCells(panel: NotebookPanel, tag: string): number[] {
  const out: number[] = [];
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type === 'code' && tagsOf(panel, i).includes(tag)) {
      out.push(i);
    }
  });
  return out;
}

/** Count of cells per `ms-*` tag present (plus the known tags, even when absent). */
export function tagCounts(panel: NotebookPanel): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const tag of KNOWN_TAGS) {
    counts[tag] = 0;
  }
  panel.content.widgets.forEach((cell, i) => {
    if (cell.model.type !== 'code') {
      return;
    }
    for (const tag of tagsOf(panel, i)) {
      if (tag.startsWith('ms-')) {
        counts[tag] = (counts[tag] ?? 0) + 1;
      }
    }
  });
  return counts;
}

/** Run the cells tagged `tag` one after another, showing each as it runs; resolves to how many ran. */
export async function runTagged(panel: NotebookPanel, tag: string): Promise<number> {
  const indexes = taggedCells(panel, tag);
  const notebook = panel.content;
  for (const index of indexes) {
    notebook.activeCellIndex = index;
    notebook.deselectAll();
    const ok = await NotebookActions.run(notebook, panel.sessionContext);
    if (!ok) {
      break; // an error stops the sequence, as "run all" does
    }
  }
  return indexes.length;
}

function panelFor(tracker: INotebookTracker, path?: string): NotebookPanel | null {
  if (path) {
    return tracker.find(p => p.context.path === path) ?? null;
  }
  return tracker.currentWidget;
}

export function addRunTaggedCommand(commands: CommandRegistry, tracker: INotebookTracker): void {
  commands.addCommand(RUN_TAGGED, {
    label: args => {
      const tag = args.tag ? `Run Cells Tagged ${args.tag}` : 'Run Tagged Cells';
      return typeof args.count === 'number' ? `${tag} (${args.count})` : tag;
    },
    caption: 'Run the notebook cells that carry this tag, in order',
    isEnabled: args => panelFor(tracker, args.path as string | undefined) !== null,
    execute: async args => {
      const panel = panelFor(tracker, args.path as string | undefined);
      const tag = (args.tag as string) || 'ms-eval';
      return panel ? runTagged(panel, tag) : 0;
    }
  });
}

/** Answer the kernel's requests on the "ms-notebook" comm for this notebook. */
function registerCommTarget(panel: NotebookPanel, kernel: Kernel.IKernelConnection | null): void {
  if (!kernel) {
    return;
  }
  kernel.registerCommTarget(COMM_TARGET, (comm: Kernel.IComm, open: KernelMessage.ICommOpenMsg) => {
    const handle = async (data: any) => {
      const action = data?.action;
      if (action === 'hello') {
        comm.send({ action: 'hello', version: 1, tags: tagCounts(panel) });
      } else if (action === 'run-tagged' && typeof data.tag === 'string') {
        const cells = await runTagged(panel, data.tag);
        if (!comm.isDisposed) {
          comm.send({ action: 'ran', tag: data.tag, cells });
        }
      }
    };
    // Never return these promises: the kernel connection waits for a handler's promise before it handles the
    // next message, and running cells needs the replies that come after this one (a deadlock otherwise).
    comm.onMsg = msg => {
      void handle(msg.content.data);
    };
    void handle(open.content.data);
  });
}

/** Toolbar button and kernel comm for one notebook panel. */
export function extendPanel(panel: NotebookPanel, commands: CommandRegistry): void {
  const button = new ToolbarButton({
    className: 'ms-RunTaggedButton',
    label: 'Run tagged',
    tooltip: 'Run the cells tagged ms-eval or ms-finetune',
    onClick: () => {
      const menu = new Menu({ commands });
      menu.addClass('ms-RunTaggedMenu');
      for (const [tag, n] of Object.entries(tagCounts(panel))) {
        menu.addItem({ command: RUN_TAGGED, args: { tag, path: panel.context.path, count: n } });
      }
      const rect = button.node.getBoundingClientRect();
      menu.open(rect.left, rect.bottom);
    }
  });
  panel.toolbar.insertItem(10, 'msRunTagged', button);
  registerCommTarget(panel, panel.sessionContext.session?.kernel ?? null);
  panel.sessionContext.kernelChanged.connect((_, change) => registerCommTarget(panel, change.newValue));
}
