/**
 * Checkpoint Viewer: a document for .ckpt and .safetensors files that shows the index the server reads.
 *
 * The model factory's file format is null, so JupyterLab never downloads the (possibly multi-GB) file: the
 * viewer asks /ms-notebook/checkpoint for the header, tree and entries, and /ms-notebook/tensor for one
 * tensor's statistics and histogram counts when it is clicked.
 */
import { Contents } from '@jupyterlab/services';
import {
  ABCWidgetFactory,
  DocumentRegistry,
  DocumentWidget,
  IDocumentWidget,
  TextModelFactory
} from '@jupyterlab/docregistry';
import { Widget } from '@lumino/widgets';

import {
  fetchCheckpoint,
  fetchTensor,
  formatBytes,
  formatNumber,
  ICheckpointSummary,
  ITensorDetail
} from './api';
import { drawHistogram } from './histogram';

export const FILE_TYPE = 'ms-checkpoint';
export const MODEL_FACTORY = 'ms-checkpoint-metadata';
export const VIEWER_FACTORY = 'Checkpoint Viewer';

/** A model factory that never reads the file's content (file format null). */
export class CheckpointModelFactory extends TextModelFactory {
  get name(): string {
    return MODEL_FACTORY;
  }
  get fileFormat(): Contents.FileFormat {
    return null;
  }
}

interface ITreeNode {
  name: string;
  path: string;
  children: Map<string, ITreeNode>;
  row: ICheckpointSummary['entries']['rows'][number] | null;
  tensors: number;
  numel: number;
  bytes: number;
}

function buildTree(rows: ICheckpointSummary['entries']['rows']): ITreeNode {
  const root: ITreeNode = {
    name: '',
    path: '',
    children: new Map(),
    row: null,
    tensors: 0,
    numel: 0,
    bytes: 0
  };
  for (const row of rows) {
    const [name, , , , numel, nbytes] = row;
    let node = root;
    const parts = name.split('.');
    parts.forEach((part, i) => {
      node.tensors += 1;
      node.numel += numel;
      node.bytes += nbytes;
      let child = node.children.get(part);
      if (!child) {
        child = {
          name: part,
          path: parts.slice(0, i + 1).join('.'),
          children: new Map(),
          row: null,
          tensors: 0,
          numel: 0,
          bytes: 0
        };
        node.children.set(part, child);
      }
      node = child;
    });
    node.tensors += 1;
    node.numel += numel;
    node.bytes += nbytes;
    node.row = row;
  }
  return root;
}

function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = ''
): HTMLElementTagNameMap[K] {
  const node = document.createElement(tag);
  if (className) {
    node.className = className;
  }
  if (text) {
    node.textContent = text;
  }
  return node;
}

/** The viewer's content: header, filterable tree and the selected tensor's details. */
export class CheckpointViewer extends Widget {
  constructor(path: string) {
    super();
    this._path = path;
    this.addClass('ms-CheckpointViewer');
    this._header = h('div', 'ms-CheckpointViewer-header');
    const body = h('div', 'ms-CheckpointViewer-body');
    const left = h('div', 'ms-CheckpointViewer-treePane');
    this._filter = h('input', 'ms-CheckpointViewer-filter jp-mod-styled');
    this._filter.type = 'search';
    this._filter.placeholder = 'Filter tensors by name…';
    this._filter.addEventListener('input', () => this._onFilter());
    this._note = h('div', 'ms-CheckpointViewer-note');
    this._tree = h('div', 'ms-CheckpointViewer-tree');
    this._tree.setAttribute('role', 'tree');
    left.append(this._filter, this._note, this._tree);
    this._detail = h('div', 'ms-CheckpointViewer-detail');
    this._detail.appendChild(
      h('div', 'ms-CheckpointViewer-placeholder', 'Click a tensor to see its statistics.')
    );
    body.append(left, this._detail);
    this.node.append(this._header, body);
  }

  get path(): string {
    return this._path;
  }

  set path(value: string) {
    this._path = value;
  }

  /** (Re)load the summary and tree from the server. */
  async load(): Promise<void> {
    this._header.textContent = 'Reading the checkpoint index…';
    try {
      const summary = await fetchCheckpoint(this._path, this._filter.value);
      this._renderHeader(summary);
      this._renderTree(summary);
    } catch (error) {
      this._header.replaceChildren(
        h('div', 'ms-CheckpointViewer-error', `Cannot open ${this._path}: ${(error as Error).message}`)
      );
    }
  }

  private _onFilter(): void {
    window.clearTimeout(this._filterTimer);
    this._filterTimer = window.setTimeout(async () => {
      try {
        const summary = await fetchCheckpoint(this._path, this._filter.value);
        this._renderTree(summary);
      } catch (error) {
        this._note.textContent = (error as Error).message;
      }
    }, 200);
  }

  private _renderHeader(s: ICheckpointSummary): void {
    const title = h('div', 'ms-CheckpointViewer-title');
    title.append(h('span', 'ms-CheckpointViewer-name', s.name), h('span', 'ms-Badge', s.format));
    if (s.has_crc) {
      title.append(h('span', 'ms-Badge', 'crc'));
    }
    const facts = h('div', 'ms-CheckpointViewer-facts');
    const fact = (label: string, value: string) => {
      const item = h('span', 'ms-Fact');
      item.append(h('span', 'ms-Fact-value', value), h('span', 'ms-Fact-label', label));
      facts.append(item);
    };
    fact('tensors', formatNumber(s.num_tensors));
    fact('parameters', formatNumber(s.num_params));
    fact('on disk', formatBytes(s.file_size));
    for (const [group, g] of Object.entries(s.groups)) {
      fact(group, `${formatNumber(g.tensors)} · ${formatBytes(g.bytes)}`);
    }
    this._header.replaceChildren(title, facts);
  }

  private _renderTree(s: ICheckpointSummary): void {
    const page = s.entries;
    const root = buildTree(page.rows);
    const filtering = this._filter.value.trim() !== '';
    this._note.textContent =
      page.total > page.rows.length
        ? `Showing ${page.rows.length} of ${page.total} tensors: refine the filter.`
        : filtering
          ? `${page.total} matching tensors`
          : '';
    this._tree.replaceChildren();
    const expandAll = filtering && page.rows.length <= 400;
    const addNode = (node: ITreeNode, depth: number, container: HTMLElement) => {
      const row = h('div', 'ms-TreeRow');
      row.style.paddingLeft = `${8 + depth * 14}px`;
      row.setAttribute('role', 'treeitem');
      row.dataset.path = node.path;
      const caret = h('span', 'ms-TreeRow-caret');
      const name = h('span', 'ms-TreeRow-name', node.name);
      const meta = h('span', 'ms-TreeRow-meta');
      row.append(caret, name, meta);
      container.append(row);
      if (node.row && node.children.size === 0) {
        const [, shape, dtype] = node.row;
        row.classList.add('ms-mod-leaf');
        meta.textContent = `${dtype} [${shape.join(', ')}]`;
        row.addEventListener('click', () => this._select(node.path, row));
        return;
      }
      meta.textContent = `${node.tensors} · ${formatBytes(node.bytes)}`;
      const children = h('div', 'ms-TreeChildren');
      let expanded = expandAll || depth < 1;
      const toggle = () => {
        caret.textContent = expanded ? '▾' : '▸';
        children.style.display = expanded ? '' : 'none';
        row.setAttribute('aria-expanded', String(expanded));
      };
      for (const child of node.children.values()) {
        addNode(child, depth + 1, children);
      }
      container.append(children);
      toggle();
      row.addEventListener('click', () => {
        expanded = !expanded;
        toggle();
      });
    };
    for (const child of root.children.values()) {
      addNode(child, 0, this._tree);
    }
    if (page.rows.length === 0) {
      this._tree.append(h('div', 'ms-CheckpointViewer-placeholder', 'No tensor matches.'));
    }
  }

  private async _select(name: string, row: HTMLElement): Promise<void> {
    this._tree.querySelectorAll('.ms-mod-selected').forEach(n => n.classList.remove('ms-mod-selected'));
    row.classList.add('ms-mod-selected');
    this._detail.replaceChildren(h('div', 'ms-CheckpointViewer-placeholder', `Reading ${name}…`));
    try {
      const detail = await fetchTensor(this._path, name);
      this._renderDetail(detail);
    } catch (error) {
      this._detail.replaceChildren(h('div', 'ms-CheckpointViewer-error', (error as Error).message));
    }
  }

  private _renderDetail(d: ITensorDetail): void {
    const title = h('div', 'ms-Detail-title', d.name);
    const meta = h(
      'div',
      'ms-Detail-meta',
      `${d.dtype} · shape [${d.shape.join(', ')}] · ${formatNumber(d.numel)} values · ` +
        `${formatBytes(d.nbytes)} · ${d.group}`
    );
    const parts: HTMLElement[] = [title, meta];
    if (d.stats) {
      const table = h('table', 'ms-Stats');
      const rows: [string, string][] = [
        ['mean', formatNumber(d.stats.mean)],
        ['std', formatNumber(d.stats.std)],
        ['min', formatNumber(d.stats.min)],
        ['max', formatNumber(d.stats.max)],
        ['mean |x|', formatNumber(d.stats.mean_abs)],
        ['zeros', `${((d.stats.zero_fraction ?? 0) * 100).toFixed(1)} %`],
        ['NaN', String(d.stats.nan_count)],
        ['Inf', String(d.stats.inf_count)]
      ];
      for (const [k, v] of rows) {
        const tr = h('tr');
        tr.append(h('th', '', k), h('td', '', v));
        table.append(tr);
      }
      parts.push(table);
    }
    if (d.histogram) {
      const box = h('div', 'ms-Detail-histogram');
      box.append(drawHistogram(d.histogram.counts, d.histogram.edges));
      parts.push(box);
    }
    if (d.note) {
      parts.push(h('div', 'ms-CheckpointViewer-note', d.note));
    }
    if (d.preview !== null) {
      const text =
        typeof d.preview === 'string'
          ? JSON.stringify(d.preview)
          : d.preview
              .map(v => (Array.isArray(v) ? `${v[0]}+${v[1]}j` : formatNumber(v as number)))
              .join(', ') + (d.numel > d.preview.length ? ', …' : '');
      parts.push(h('div', 'ms-Detail-previewLabel', 'first values'), h('code', 'ms-Detail-preview', text));
    }
    this._detail.replaceChildren(...parts);
  }

  private _path: string;
  private _header: HTMLDivElement;
  private _filter: HTMLInputElement;
  private _note: HTMLDivElement;
  private _tree: HTMLDivElement;
  private _detail: HTMLDivElement;
  private _filterTimer = 0;
}

/** Creates one viewer per opened checkpoint; a rename moves the viewer to the new path. */
export class CheckpointViewerFactory extends ABCWidgetFactory<
  IDocumentWidget<CheckpointViewer>,
  DocumentRegistry.ICodeModel
> {
  protected createNewWidget(
    context: DocumentRegistry.IContext<DocumentRegistry.ICodeModel>
  ): IDocumentWidget<CheckpointViewer> {
    const content = new CheckpointViewer(context.path);
    const widget = new DocumentWidget({ content, context });
    widget.addClass('ms-CheckpointDocument');
    void context.ready.then(() => content.load());
    context.pathChanged.connect((_, path) => {
      content.path = path;
    });
    return widget;
  }
}
