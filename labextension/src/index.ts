/**
 * ms-notebook for JupyterLab: one plugin per feature.
 *   ms-notebook:viewer         .ckpt / .safetensors open in the Checkpoint Viewer (metadata only, via the server)
 *   ms-notebook:open-set       "Open as Checkpoint" on folders and *.safetensors.index.json / param_name_map.json
 *   ms-notebook:new-notebook   "New Notebook from Checkpoint" in the file browser's context menu and the palette
 *   ms-notebook:tagged-cells   run cells tagged ms-eval / ms-finetune from the toolbar, a command or the kernel
 *   ms-notebook:restored-clean a notebook reopened with saved widget state is not marked modified
 */
import {
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ICommandPalette, WidgetTracker, showErrorMessage } from '@jupyterlab/apputils';
import { IDocumentWidget } from '@jupyterlab/docregistry';
import { IFileBrowserFactory } from '@jupyterlab/filebrowser';
import { INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { LabIcon } from '@jupyterlab/ui-components';

import { createNotebookFor, isCheckpointPath } from './newNotebook';
import { keepCleanWhileRestoring } from './restoredClean';
import { addRunTaggedCommand, extendPanel } from './taggedCells';
import {
  CheckpointFolderModelFactory,
  CheckpointModelFactory,
  CheckpointViewer,
  CheckpointViewerFactory,
  FILE_TYPE,
  FOLDER_MODEL_FACTORY,
  FOLDER_VIEWER_FACTORY,
  INDEX_FILE_TYPE,
  MODEL_FACTORY,
  VIEWER_FACTORY
} from './viewer';

const CATEGORY = 'MindSpore';
const NEW_NOTEBOOK = 'ms-notebook:new-notebook-from-checkpoint';
const OPEN_AS_CHECKPOINT = 'ms-notebook:open-as-checkpoint';
/** Index files of checkpoint sets; matched by name, so ordinary .json files still open as JSON. */
const INDEX_PATTERN = '^(.+\\.safetensors\\.index\\.json|param_name_map\\.json)$';

export const checkpointIcon = new LabIcon({
  name: 'ms-notebook:checkpoint',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 16 16">' +
    '<g class="jp-icon3" fill="#616161">' +
    '<rect x="2" y="2" width="5" height="5" rx="1"/><rect x="9" y="2" width="5" height="5" rx="1"/>' +
    '<rect x="2" y="9" width="5" height="5" rx="1"/><rect x="9" y="9" width="5" height="5" rx="1" opacity=".5"/>' +
    '</g></svg>'
});

const viewerPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ms-notebook:viewer',
  description: 'Opens MindSpore checkpoints in a viewer that reads only their index.',
  autoStart: true,
  optional: [ILayoutRestorer],
  activate: (app: JupyterFrontEnd, restorer: ILayoutRestorer | null) => {
    app.docRegistry.addFileType({
      name: FILE_TYPE,
      displayName: 'MindSpore checkpoint',
      extensions: ['.ckpt', '.safetensors'],
      mimeTypes: ['application/octet-stream'],
      contentType: 'file',
      fileFormat: null,
      icon: checkpointIcon
    });
    app.docRegistry.addFileType({
      name: INDEX_FILE_TYPE,
      displayName: 'Checkpoint set index',
      extensions: [],
      pattern: INDEX_PATTERN,
      mimeTypes: ['application/json'],
      contentType: 'file',
      fileFormat: null,
      icon: checkpointIcon
    });
    app.docRegistry.addModelFactory(new CheckpointModelFactory());
    app.docRegistry.addModelFactory(new CheckpointFolderModelFactory());
    const factory = new CheckpointViewerFactory({
      name: VIEWER_FACTORY,
      label: 'Checkpoint Viewer',
      modelName: MODEL_FACTORY,
      fileTypes: [FILE_TYPE, INDEX_FILE_TYPE],
      defaultFor: [FILE_TYPE, INDEX_FILE_TYPE],
      readOnly: true
    });
    // folders open only through "Open as Checkpoint": double-clicking one still enters it
    const folderFactory = new CheckpointViewerFactory({
      name: FOLDER_VIEWER_FACTORY,
      label: 'Checkpoint Viewer',
      modelName: FOLDER_MODEL_FACTORY,
      fileTypes: ['directory'],
      defaultFor: [],
      readOnly: true
    });
    const tracker = new WidgetTracker<IDocumentWidget<CheckpointViewer>>({
      namespace: 'ms-checkpoint-viewer'
    });
    // which factory made a viewer, so a reload reopens a folder as a folder (its context may not be ready yet)
    const folders = new WeakSet<IDocumentWidget<CheckpointViewer>>();
    const factoryOf = (widget: IDocumentWidget<CheckpointViewer>) =>
      folders.has(widget) ? FOLDER_VIEWER_FACTORY : VIEWER_FACTORY;
    for (const f of [factory, folderFactory]) {
      f.widgetCreated.connect((_, widget) => {
        if (f === folderFactory) {
          folders.add(widget);
        }
        widget.title.icon = checkpointIcon;
        void tracker.add(widget);
        widget.context.pathChanged.connect(() => void tracker.save(widget));
      });
      app.docRegistry.addWidgetFactory(f);
    }
    if (restorer) {
      void restorer.restore(tracker, {
        command: 'docmanager:open',
        args: widget => ({ path: widget.context.path, factory: factoryOf(widget) }),
        name: widget => widget.context.path
      });
    }
  }
};

const openSetPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ms-notebook:open-set',
  description: 'Opens a folder (shards, rank_N/ files of a distributed run) or an index file as one checkpoint.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  activate: (app: JupyterFrontEnd, browsers: IFileBrowserFactory) => {
    const selected = () => {
      const item = browsers.tracker.currentWidget?.selectedItems().next();
      return item && !item.done ? item.value : null;
    };
    app.commands.addCommand(OPEN_AS_CHECKPOINT, {
      label: 'Open as Checkpoint',
      caption: 'Read this folder or index file as one checkpoint in the Checkpoint Viewer',
      icon: checkpointIcon,
      isEnabled: args => typeof args.path === 'string' || selected() !== null,
      execute: args => {
        const item = selected();
        const path = typeof args.path === 'string' ? args.path : item?.path;
        if (!path) {
          return;
        }
        const isFolder = typeof args.path === 'string' ? args.folder === true : item?.type === 'directory';
        return app.commands.execute('docmanager:open', {
          path,
          factory: isFolder ? FOLDER_VIEWER_FACTORY : VIEWER_FACTORY
        });
      }
    });
    app.contextMenu.addItem({
      command: OPEN_AS_CHECKPOINT,
      selector: '.jp-DirListing-item[data-isdir="true"]',
      rank: 2
    });
    app.contextMenu.addItem({
      command: OPEN_AS_CHECKPOINT,
      selector: `.jp-DirListing-item[data-file-type="${INDEX_FILE_TYPE}"]`,
      rank: 2
    });
  }
};

const newNotebookPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ms-notebook:new-notebook',
  description: 'Creates a notebook next to a checkpoint that opens it, browses it and plans a transfer.',
  autoStart: true,
  requires: [IFileBrowserFactory],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, browsers: IFileBrowserFactory, palette: ICommandPalette | null) => {
    const target = (args: Record<string, unknown>): string | null => {
      if (typeof args.path === 'string' && isCheckpointPath(args.path)) {
        return args.path;
      }
      const current = app.shell.currentWidget as any;
      const docPath = current?.context?.path;
      if (typeof docPath === 'string' && isCheckpointPath(docPath)) {
        return docPath;
      }
      const item = browsers.tracker.currentWidget?.selectedItems().next();
      const selected = item && !item.done ? item.value : null;
      return selected && isCheckpointPath(selected.path) ? selected.path : null;
    };
    app.commands.addCommand(NEW_NOTEBOOK, {
      label: 'New Notebook from Checkpoint',
      caption: 'Create a notebook next to the checkpoint that opens it, browses it and sets up a TransferPlan',
      icon: args => (args.isPalette ? undefined : checkpointIcon),
      isEnabled: args => target(args) !== null,
      execute: async args => {
        const path = target(args);
        if (!path) {
          return;
        }
        try {
          const notebook = await createNotebookFor(app.serviceManager.contents, path);
          return app.commands.execute('docmanager:open', { path: notebook, factory: 'Notebook' });
        } catch (error) {
          void showErrorMessage('New notebook from checkpoint', error as Error);
        }
      }
    });
    app.contextMenu.addItem({
      command: NEW_NOTEBOOK,
      selector: `.jp-DirListing-item[data-file-type="${FILE_TYPE}"]`,
      rank: 3
    });
    app.contextMenu.addItem({ command: NEW_NOTEBOOK, selector: '.ms-CheckpointViewer', rank: 1 });
    palette?.addItem({ command: NEW_NOTEBOOK, category: CATEGORY });
  }
};

const taggedCellsPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ms-notebook:tagged-cells',
  description: 'Runs cells tagged ms-eval or ms-finetune from the toolbar, a command or the kernel.',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ICommandPalette],
  activate: (app: JupyterFrontEnd, tracker: INotebookTracker, palette: ICommandPalette | null) => {
    addRunTaggedCommand(app.commands, tracker);
    tracker.widgetAdded.connect((_, panel: NotebookPanel) => extendPanel(panel, app.commands));
    for (const tag of ['ms-eval', 'ms-finetune']) {
      palette?.addItem({ command: 'ms-notebook:run-tagged-cell', args: { tag }, category: CATEGORY });
    }
  }
};

const restoredCleanPlugin: JupyterFrontEndPlugin<void> = {
  id: 'ms-notebook:restored-clean',
  description: 'A notebook reopened with saved widget state is not marked modified by the restore.',
  autoStart: true,
  requires: [INotebookTracker],
  activate: (_app: JupyterFrontEnd, tracker: INotebookTracker) => {
    tracker.widgetAdded.connect((_, panel: NotebookPanel) => keepCleanWhileRestoring(panel));
  }
};

export default [viewerPlugin, openSetPlugin, newNotebookPlugin, taggedCellsPlugin, restoredCleanPlugin];
