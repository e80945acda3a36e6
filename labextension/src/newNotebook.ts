/**
 * "New notebook from checkpoint": writes a notebook next to a checkpoint whose first cells open it, browse it
 * and set up a TransferPlan, as ordinary code the user reads and edits.
 */
import { PathExt } from '@jupyterlab/coreutils';
import { Contents } from '@jupyterlab/services';

export const CHECKPOINT_EXTENSIONS = ['.ckpt', '.safetensors'];

export function isCheckpointPath(path: string): boolean {
  return CHECKPOINT_EXTENSIONS.includes(PathExt.extname(path).toLowerCase());
}

function code(source: string[]): any {
  return {
    cell_type: 'code',
    execution_count: null,
    metadata: {},
    outputs: [],
    source: source.join('\n')
  };
}

function markdown(source: string[]): any {
  return { cell_type: 'markdown', metadata: {}, source: source.join('\n') };
}

/**
 * The notebook's JSON (nbformat 4) for a checkpoint called `fileName` in the same folder. The code names the
 * checkpoint by that bare file name (the kernel starts in the notebook's folder), never by an absolute path.
 */
export function notebookFor(fileName: string): any {
  const literal = JSON.stringify(fileName);
  return {
    nbformat: 4,
    nbformat_minor: 5,
    metadata: {
      kernelspec: { name: 'python3', display_name: 'Python 3 (ipykernel)', language: 'python' },
      language_info: { name: 'python' }
    },
    cells: [
      markdown([
        `# ${fileName}`,
        '',
        'Open the checkpoint (only its index is read), browse its tensors, then plan a transfer into a network.'
      ]),
      // the browser is shown once, by the next cell: this one only says what was opened
      code(['import ms_notebook', '', `ck = ms_notebook.open_checkpoint(${literal})`, 'print(ck)']),
      code(['ms_notebook.browse(ck)']),
      code([
        '# Transfer learning: build the network to fine-tune. The demo DigitsNet stands in for yours;',
        '# compare() lists which checkpoint tensors match its parameters by name, shape and dtype.',
        'net = ms_notebook.demo.DigitsNet(num_classes=10)',
        'ms_notebook.compare(ck, net)'
      ]),
      code([
        '# The plan reloads every parameter that matches and keeps the rest as initialised.',
        '# Chain e.g. .freeze_backbone() or .train_last(1), then plan.apply() before training.',
        'plan = ms_notebook.TransferPlan(net, ck)',
        'plan'
      ])
    ]
  };
}

/** Save the notebook next to the checkpoint under a free name; return its path. */
export async function createNotebookFor(
  contents: Contents.IManager,
  checkpointPath: string
): Promise<string> {
  const dir = PathExt.dirname(checkpointPath);
  const fileName = PathExt.basename(checkpointPath);
  const stem = PathExt.basename(checkpointPath, PathExt.extname(checkpointPath));
  for (let i = 0; i < 1000; i++) {
    const candidate = PathExt.join(dir, `${stem}${i === 0 ? '' : `-${i}`}.ipynb`);
    try {
      await contents.get(candidate, { content: false });
      continue; // taken
    } catch {
      await contents.save(candidate, {
        type: 'notebook',
        format: 'json',
        content: notebookFor(fileName)
      });
      return candidate;
    }
  }
  throw new Error(`no free notebook name next to ${checkpointPath}`);
}
