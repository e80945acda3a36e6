/**
 * A notebook reopened with saved widget state is not an edit. ipywidgets' manager marks the notebook dirty
 * whenever it registers a model, including the models it restores from the notebook's own metadata when the
 * notebook opens (with "Save Widget State Automatically" on, which this package ships); the kernel's start
 * also rewrites metadata. So a lesson that was saved and closed showed as modified the moment it was
 * reopened, and asked to be saved again on close.
 *
 * In the first seconds after the document is ready, a dirty flag is put back whenever the cells (sources,
 * outputs, their metadata) are still exactly as they were loaded: restoring and connecting are not editing.
 * The first real change (a typed character, a run cell) ends the watch.
 */
import { NotebookPanel } from '@jupyterlab/notebook';

/** How long after the document is ready a restore may still be under way (models load with the views). */
const RESTORE_WINDOW_MS = 15000;

export function keepCleanWhileRestoring(panel: NotebookPanel): void {
  const context = panel.context;
  void context.ready.then(() => {
    const model = context.model;
    const cellsOf = () => JSON.stringify((model.toJSON() as { cells?: unknown }).cells);
    const loaded = cellsOf();
    const deadline = Date.now() + RESTORE_WINDOW_MS;
    const check = () => {
      if (!model.dirty) {
        return;
      }
      if (Date.now() > deadline || cellsOf() !== loaded) {
        model.stateChanged.disconnect(onState);
        return;
      }
      model.dirty = false;
    };
    const onState = (_: unknown, change: { name: string; newValue: unknown }) => {
      if (change.name === 'dirty' && change.newValue === true) {
        setTimeout(check, 0); // after the handler that raised it
      }
    };
    model.stateChanged.connect(onState);
    setTimeout(check, 0);
    setTimeout(() => model.stateChanged.disconnect(onState), RESTORE_WINDOW_MS);
  });
}
