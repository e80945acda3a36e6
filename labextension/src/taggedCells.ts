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
import { Menu, Widget } from '@lumino/widgets';
import { INotebookModel, INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';
import { Kernel, KernelMessage } from '@jupyterlab/services';

export const RUN_TAGGED = 'ms-notebook:run-tagged-cell';
export const COMM_TARGET = 'ms-notebook';
export const KNOWN_TAGS = ['ms-eval', 'ms-finetune'];

type ICellModel = ReturnType<INotebookModel['cells']['get']>;

function tagsOf(cell: ICellModel | undefined): string[] {
  const tags = cell?.getMetadata('tags');
  return Array.isArray(tags) ? (tags as string[]) : [];
}

function cellModels(panel: NotebookPanel): ICellModel[] {
  const cells = panel.content.model?.cells;
  const out: ICellModel[] = [];
  if (cells) {
    for (let i = 0; i < cells.length; i++) {
      out.push(cells.get(i));
    }
  }
  return out;
}

/** Indexes of the code cells tagged `tag`, in notebook order (read from the model, so always current). */
export function taggedCells(panel: NotebookPanel, tag: string): number[] {
  const out: number[] = [];
  cellModels(panel).forEach((cell, i) => {
    if (cell.type === 'code' && tagsOf(cell).includes(tag)) {
      out.push(i);
    }
  });
  return out;
}

/** Count of code cells per `ms-*` tag present (plus the known tags, even when absent). */
export function tagCounts(panel: NotebookPanel): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const tag of KNOWN_TAGS) {
    counts[tag] = 0;
  }
  for (const cell of cellModels(panel)) {
    if (cell.type !== 'code') {
      continue;
    }
    for (const tag of tagsOf(cell)) {
      if (tag.startsWith('ms-')) {
        counts[tag] = (counts[tag] ?? 0) + 1;
      }
    }
  }
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

/**
 * The toolbar's "Run tagged (N)" button: shown only while the notebook has `ms-*` tagged code cells, N their
 * number; a click opens a menu with one entry per tag that has cells.
 */
export class RunTaggedButton extends Widget {
  constructor(onClick: () => void) {
    super();
    this.addClass('jp-ToolbarButton');
    this._button = document.createElement('button');
    this._button.className = 'jp-ToolbarButtonComponent jp-mod-minimal jp-Button ms-RunTaggedButton';
    this._button.title = 'Run the cells tagged ms-eval or ms-finetune';
    this._label = document.createElement('span');
    this._label.className = 'jp-ToolbarButtonComponent-label';
    this._button.append(this._label);
    this._button.addEventListener('click', onClick);
    this.node.append(this._button);
    this.count = 0;
  }

  get button(): HTMLButtonElement {
    return this._button;
  }

  /** Tagged cells in the notebook: 0 hides the button. */
  set count(n: number) {
    this._label.textContent = `Run tagged (${n})`;
    this.setHidden(n === 0);
  }

  private _button: HTMLButtonElement;
  private _label: HTMLSpanElement;
}

/** Keep `update` called whenever a cell is added, removed or re-tagged in the panel's notebook. */
function watchTags(panel: NotebookPanel, update: () => void): void {
  const watched = new WeakSet<ICellModel>();
  const watch = () => {
    for (const cell of cellModels(panel)) {
      if (!watched.has(cell)) {
        watched.add(cell);
        cell.metadataChanged.connect(update);
      }
    }
    update();
  };
  let model: INotebookModel | null = null;
  const attach = () => {
    model?.cells.changed.disconnect(watch);
    model = panel.content.model;
    model?.cells.changed.connect(watch);
    watch();
  };
  panel.content.modelChanged.connect(attach);
  void panel.context.ready.then(attach);
  attach();
}

/** Toolbar button and kernel comm for one notebook panel. */
export function extendPanel(panel: NotebookPanel, commands: CommandRegistry): void {
  const button: RunTaggedButton = new RunTaggedButton(() => {
    const menu = new Menu({ commands });
    menu.addClass('ms-RunTaggedMenu');
    for (const [tag, n] of Object.entries(tagCounts(panel))) {
      if (n > 0) {
        menu.addItem({ command: RUN_TAGGED, args: { tag, path: panel.context.path, count: n } });
      }
    }
    const rect = button.button.getBoundingClientRect();
    menu.open(rect.left, rect.bottom);
  });
  panel.toolbar.insertItem(10, 'msRunTagged', button);
  watchTags(panel, () => {
    if (!button.isDisposed) {
      button.count = Object.values(tagCounts(panel)).reduce((a, b) => a + b, 0);
    }
  });
  registerCommTarget(panel, panel.sessionContext.session?.kernel ?? null);
  panel.sessionContext.kernelChanged.connect((_, change) => registerCommTarget(panel, change.newValue));
}
