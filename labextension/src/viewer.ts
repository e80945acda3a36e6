/**
 * Checkpoint Viewer: a document for .ckpt and .safetensors files that shows the index the server reads.
 *
 * The model factory's file format is null, so JupyterLab never downloads the (possibly multi-GB) file: the
 * viewer asks /ms-notebook/checkpoint for the header, tree and entries, and /ms-notebook/tensor for one
 * tensor's statistics and histogram counts when it is selected.
 *
 * As in the notebook browser: the filter is the server's (ms_notebook/checkpoint/filters.py, the one syntax of
 * every view), optimizer state and extra values are hidden until their toggle is ticked (with their counts)
 * and marked when shown, and sizes are written by units.ts (the mirror of checkpoint/units.py).
 *
 * Keyboard (ARIA tree): ↑/↓ move, →/← open/close or go to child/parent, Home/End, Enter or Space selects a
 * tensor (or opens/closes a folder). Every name carries its full path as a tooltip.
 */
import { Contents } from '@jupyterlab/services';
import {
  ABCWidgetFactory,
  DocumentRegistry,
  DocumentWidget,
  IDocumentWidget,
  TextModelFactory
} from '@jupyterlab/docregistry';
import { Message } from '@lumino/messaging';
import { Widget } from '@lumino/widgets';

import { fetchCheckpoint, fetchTensor, formatNumber, ICheckpointSummary, ITensorDetail } from './api';
import { HistogramBox } from './histogram';
import { formatBytes, formatCount, formatInt } from './units';

export const FILE_TYPE = 'ms-checkpoint';
export const INDEX_FILE_TYPE = 'ms-checkpoint-index';
export const MODEL_FACTORY = 'ms-checkpoint-metadata';
export const FOLDER_MODEL_FACTORY = 'ms-checkpoint-folder-metadata';
export const VIEWER_FACTORY = 'Checkpoint Viewer';
export const FOLDER_VIEWER_FACTORY = 'Checkpoint Set Viewer';
/** Same text as ms_notebook.checkpoint.filters.FILTER_HINT (the notebook browser's placeholder). */
export const FILTER_HINT = 'Filter: text, *.weight, /bn/ or /regex/';
/** Groups hidden until their toggle is ticked, as in the notebook browser (tree_model.DEFAULT_HIDDEN_GROUPS). */
export const HIDDEN_BY_DEFAULT = ['optimizer', 'extra'];
const GROUP_LABELS: Record<string, string> = { optimizer: 'optimizer state', extra: 'extra values' };
const NARROW_PX = 560;

/** A model factory that never reads the file's content (file format null). */
export class CheckpointModelFactory extends TextModelFactory {
  get name(): string {
    return MODEL_FACTORY;
  }
  get fileFormat(): Contents.FileFormat {
    return null;
  }
  /** The viewer never saves: a context that may save first snapshots the file into .ipynb_checkpoints
   * (a full copy of a possibly multi-GB checkpoint, and an error for a folder). A context does not save
   * collaborative models, so the model says it is one. */
  createNew(options: Parameters<TextModelFactory['createNew']>[0] = {}): DocumentRegistry.ICodeModel {
    return super.createNew({ ...options, collaborationEnabled: true });
  }
}

/** The same for a folder read as a checkpoint set: the contents manager is asked for the directory, without
 * its listing. */
export class CheckpointFolderModelFactory extends CheckpointModelFactory {
  get name(): string {
    return FOLDER_MODEL_FACTORY;
  }
  get contentType(): Contents.ContentType {
    return 'directory';
  }
}

type EntryRow = ICheckpointSummary['entries']['rows'][number];

interface ITreeNode {
  name: string;
  path: string;
  children: Map<string, ITreeNode>;
  row: EntryRow | null;
  tensors: number;
  numel: number;
  bytes: number;
  groups: Set<string>;
}

function newNode(name: string, path: string): ITreeNode {
  return { name, path, children: new Map(), row: null, tensors: 0, numel: 0, bytes: 0, groups: new Set() };
}

function buildTree(rows: EntryRow[]): ITreeNode {
  const root = newNode('', '');
  for (const row of rows) {
    const [name, , , group, numel, nbytes] = row;
    let node = root;
    const parts = name.split('.');
    const visit = (n: ITreeNode) => {
      n.tensors += 1;
      n.numel += numel;
      n.bytes += nbytes;
      n.groups.add(group);
    };
    parts.forEach((part, i) => {
      visit(node);
      let child = node.children.get(part);
      if (!child) {
        child = newNode(part, parts.slice(0, i + 1).join('.'));
        node.children.set(part, child);
      }
      node = child;
    });
    visit(node);
    node.row = row;
  }
  return root;
}

/** The group a node is marked with: the one non-weights group all its tensors belong to, else "". */
function markOf(node: ITreeNode): string {
  if (node.groups.size !== 1) {
    return '';
  }
  const [group] = node.groups;
  return group === 'weights' ? '' : group;
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

function shapeText(shape: number[]): string {
  return shape.length ? `[${shape.join(', ')}]` : 'scalar';
}

/** The viewer's content: header, group toggles, filterable tree and the selected tensor's details. */
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
    this._filter.spellcheck = false;
    this._filter.placeholder = FILTER_HINT;
    this._filter.title =
      'bias: names containing "bias" · *.weight: a glob over the name or a dotted tail · ' +
      '/bn/: names with a segment "bn" · /^head/ or re:^head: a regular expression (all case-insensitive)';
    this._filter.setAttribute('aria-label', 'Filter tensors by name');
    this._filter.addEventListener('input', () => this._onFilter());
    this._filter.addEventListener('keydown', event => {
      if (event.key === 'ArrowDown') {
        event.preventDefault();
        const first = this._visibleRows()[0];
        if (first) {
          this._focusRow(first);
        }
      }
    });
    this._groupBar = h('div', 'ms-CheckpointViewer-groups');
    this._note = h('div', 'ms-CheckpointViewer-note');
    this._note.setAttribute('aria-live', 'polite');
    this._tree = h('div', 'ms-CheckpointViewer-tree');
    this._tree.setAttribute('role', 'tree');
    this._tree.setAttribute('aria-label', 'Tensors');
    this._tree.addEventListener('keydown', event => this._onKey(event));
    left.append(this._filter, this._groupBar, this._note, this._tree);
    this._detail = h('div', 'ms-CheckpointViewer-detail');
    this._detail.appendChild(
      h('div', 'ms-CheckpointViewer-placeholder', 'Select a tensor to see its statistics.')
    );
    body.append(left, this._detail);
    this.node.append(this._header, body);
    this._resize = new ResizeObserver(() => {
      this.toggleClass('ms-mod-narrow', this.node.clientWidth > 0 && this.node.clientWidth < NARROW_PX);
    });
    this._resize.observe(this.node);
  }

  get path(): string {
    return this._path;
  }

  set path(value: string) {
    this._path = value;
  }

  dispose(): void {
    this._resize.disconnect();
    this._histogram?.dispose();
    super.dispose();
  }

  /** (Re)load the summary and tree from the server. */
  async load(): Promise<void> {
    this._header.textContent = 'Reading the checkpoint index…';
    try {
      const summary = await this._fetch();
      this._renderHeader(summary);
      this._renderGroups(summary);
      this._renderTree(summary);
    } catch (error) {
      this._header.replaceChildren(
        h('div', 'ms-CheckpointViewer-error', `Cannot open ${this._path}: ${(error as Error).message}`)
      );
    }
  }

  protected onActivateRequest(msg: Message): void {
    super.onActivateRequest(msg);
    if (!this.node.contains(document.activeElement)) {
      this._filter.focus();
    }
  }

  /** The summary for the current filter and visible groups (weights, and those known and not hidden). */
  private async _fetch(): Promise<ICheckpointSummary> {
    // never an empty list: the server reads "no groups" as "all groups"
    const visible = () => [
      'weights',
      ...this._knownGroups.filter(g => g !== 'weights' && !this._hidden.has(g))
    ];
    let summary = await fetchCheckpoint(this._path, this._filter.value, visible());
    const known = Object.keys(summary.groups);
    if (known.some(g => !this._knownGroups.includes(g))) {
      const asked = visible().join(',');
      this._knownGroups = known;
      if (visible().join(',') !== asked) {
        summary = await fetchCheckpoint(this._path, this._filter.value, visible());
      }
    }
    return summary;
  }

  private async _refresh(): Promise<void> {
    const ticket = ++this._ticket;
    try {
      const summary = await this._fetch();
      if (ticket !== this._ticket) {
        return;
      }
      if (summary.filter_error) {
        // as in the notebook browser: the tree keeps the last filter that worked, the note says why
        this._note.textContent = `Filter not applied: ${summary.filter_error}`;
        this._note.classList.add('ms-mod-error');
        return;
      }
      this._renderGroups(summary);
      this._renderTree(summary);
    } catch (error) {
      if (ticket === this._ticket) {
        this._note.textContent = (error as Error).message;
        this._note.classList.add('ms-mod-error');
      }
    }
  }

  private _onFilter(): void {
    window.clearTimeout(this._filterTimer);
    this._filterTimer = window.setTimeout(() => void this._refresh(), 200);
  }

  private _renderHeader(s: ICheckpointSummary): void {
    const title = h('div', 'ms-CheckpointViewer-title');
    const name = h('span', 'ms-CheckpointViewer-name', s.name);
    name.title = s.path;
    title.append(name, h('span', 'ms-Badge', s.format));
    if (s.has_crc) {
      title.append(h('span', 'ms-Badge', 'crc'));
    }
    const facts = h('div', 'ms-CheckpointViewer-facts');
    const fact = (label: string, value: string, tip: string) => {
      const item = h('span', 'ms-Fact');
      item.title = tip;
      item.append(h('span', 'ms-Fact-value', value), h('span', 'ms-Fact-label', label));
      facts.append(item);
    };
    fact('tensors', formatInt(s.num_tensors), `${formatInt(s.num_tensors)} tensors`);
    fact('parameters', formatInt(s.num_params), `${formatInt(s.num_params)} values in all`);
    fact('on disk', formatBytes(s.file_size), `${formatInt(s.file_size)} bytes`);
    for (const [group, g] of Object.entries(s.groups)) {
      fact(
        group,
        `${formatInt(g.tensors)} · ${formatBytes(g.bytes)}`,
        `${group}: ${formatInt(g.tensors)} tensors, ${formatInt(g.values)} values, ${formatInt(g.bytes)} bytes`
      );
    }
    this._header.replaceChildren(title, facts);
    if (s.set) {
      title.append(h('span', 'ms-Badge', s.set.kind));
      fact('files', formatInt(s.set.files), `${formatInt(s.set.files)} files in this checkpoint set`);
      const notes = h('ul', 'ms-CheckpointViewer-setNotes');
      for (const note of s.set.notes) {
        notes.append(h('li', '', note));
      }
      this._header.append(notes);
    }
  }

  /** One toggle per group that is hidden by default and present in the file, with its tensor count. */
  private _renderGroups(s: ICheckpointSummary): void {
    const filtering = this._filter.value.trim() !== '' && !s.filter_error;
    const toggles: HTMLElement[] = [];
    for (const group of Object.keys(s.groups)) {
      if (!HIDDEN_BY_DEFAULT.includes(group)) {
        continue;
      }
      const label = h('label', `ms-GroupToggle ms-mod-group-${group}`);
      const box = h('input');
      box.type = 'checkbox';
      box.checked = !this._hidden.has(group);
      box.dataset.group = group;
      box.addEventListener('change', () => {
        if (box.checked) {
          this._hidden.delete(group);
        } else {
          this._hidden.add(group);
        }
        void this._refresh();
      });
      const total = s.groups[group].tensors;
      const matches = s.filter_matches?.[group] ?? 0;
      const count = filtering ? `${formatInt(matches)} of ${formatInt(total)}` : formatInt(total);
      label.append(box, h('span', 'ms-GroupToggle-name', GROUP_LABELS[group] ?? group), ' ');
      label.append(h('span', 'ms-GroupToggle-count', `(${count})`));
      label.title = `${box.checked ? 'Hide' : 'Show'} the ${GROUP_LABELS[group] ?? group} (${count} tensors)`;
      toggles.push(label);
    }
    if (toggles.length) {
      this._groupBar.replaceChildren(h('span', 'ms-CheckpointViewer-groupsLabel', 'Show:'), ...toggles);
    } else {
      this._groupBar.replaceChildren();
    }
  }

  private _renderTree(s: ICheckpointSummary): void {
    const page = s.entries;
    const root = buildTree(page.rows);
    const filtering = this._filter.value.trim() !== '';
    this._note.classList.toggle('ms-mod-error', !!s.filter_error);
    if (s.filter_error) {
      this._note.textContent = `Filter not applied: ${s.filter_error}`;
    } else {
      const hiddenMatches = [...this._hidden]
        .map(g => [g, filtering ? (s.filter_matches?.[g] ?? 0) : (s.groups[g]?.tensors ?? 0)] as const)
        .filter(([, n]) => n > 0)
        .map(([g, n]) => `${formatInt(n)} in ${GROUP_LABELS[g] ?? g}`);
      const hiddenText = hiddenMatches.length ? ` (hidden: ${hiddenMatches.join(', ')})` : '';
      this._note.textContent =
        page.total > page.rows.length
          ? `Showing ${formatInt(page.rows.length)} of ${formatInt(page.total)} tensors: refine the filter.`
          : filtering
            ? `${formatInt(page.total)} matching tensors${hiddenText}`
            : hiddenText
              ? `${formatInt(page.total)} tensors shown${hiddenText}`
              : '';
    }
    this._tree.replaceChildren();
    const expandAll = filtering && page.rows.length <= 400;
    let focusable: HTMLElement | null = null;
    const addNode = (node: ITreeNode, depth: number, container: HTMLElement, pos: number, size: number) => {
      const row = h('div', 'ms-TreeRow');
      row.style.paddingLeft = `${8 + depth * 14}px`;
      row.setAttribute('role', 'treeitem');
      row.setAttribute('aria-level', String(depth + 1));
      row.setAttribute('aria-posinset', String(pos));
      row.setAttribute('aria-setsize', String(size));
      row.tabIndex = -1;
      row.dataset.path = node.path;
      const caret = h('span', 'ms-TreeRow-caret');
      caret.setAttribute('aria-hidden', 'true');
      const name = h('span', 'ms-TreeRow-name', node.name);
      name.title = node.path;
      const meta = h('span', 'ms-TreeRow-meta');
      row.append(caret, name);
      const mark = markOf(node);
      if (mark) {
        row.classList.add('ms-mod-marked', `ms-mod-group-${mark}`);
        row.dataset.group = mark;
        row.append(h('span', `ms-GroupTag ms-mod-group-${mark}`, mark));
      }
      row.append(meta);
      container.append(row);
      if (node.path === this._selected) {
        row.classList.add('ms-mod-selected');
        row.setAttribute('aria-selected', 'true');
        focusable = row;
      }
      if (node.row && node.children.size === 0) {
        const [, shape, dtype, group, numel, nbytes] = node.row;
        row.classList.add('ms-mod-leaf');
        row.setAttribute('aria-selected', String(node.path === this._selected));
        meta.textContent = `${dtype} ${shapeText(shape)}`;
        row.title =
          `${node.path}\n${dtype} ${shapeText(shape)} · ${formatInt(numel)} values · ` +
          `${formatBytes(nbytes)} · ${group}`;
        row.addEventListener('click', () => {
          this._focusRow(row);
          void this._select(node.path, row);
        });
        return;
      }
      meta.textContent = `${formatInt(node.tensors)} · ${formatBytes(node.bytes)}`;
      row.title =
        `${node.path}\n${formatInt(node.tensors)} tensors · ${formatCount(node.numel)} values · ` +
        formatBytes(node.bytes);
      const children = h('div', 'ms-TreeChildren');
      children.setAttribute('role', 'none');
      const kids = [...node.children.values()];
      kids.forEach((child, i) => addNode(child, depth + 1, children, i + 1, kids.length));
      container.append(children);
      const initially = this._expanded.get(node.path) ?? (expandAll || depth < 1);
      this._setExpanded(row, initially);
      row.addEventListener('click', () => {
        this._focusRow(row);
        this._toggle(row);
      });
    };
    const top = [...root.children.values()];
    top.forEach((child, i) => addNode(child, 0, this._tree, i + 1, top.length));
    if (page.rows.length === 0) {
      this._tree.append(h('div', 'ms-CheckpointViewer-placeholder', 'No tensor matches.'));
    }
    const first = focusable ?? this._tree.querySelector<HTMLElement>('.ms-TreeRow');
    if (first) {
      first.tabIndex = 0;
    }
  }

  // ---- tree state and keyboard ----

  private _setExpanded(row: HTMLElement, expanded: boolean): void {
    const children = row.nextElementSibling as HTMLElement | null;
    if (!children || !children.classList.contains('ms-TreeChildren')) {
      return;
    }
    (row.querySelector('.ms-TreeRow-caret') as HTMLElement).textContent = expanded ? '▾' : '▸';
    children.style.display = expanded ? '' : 'none';
    row.setAttribute('aria-expanded', String(expanded));
  }

  private _toggle(row: HTMLElement, expanded?: boolean): void {
    const open = expanded ?? row.getAttribute('aria-expanded') !== 'true';
    this._expanded.set(row.dataset.path ?? '', open);
    this._setExpanded(row, open);
  }

  /** Rows a person can see now (those inside closed folders are not displayed). */
  private _visibleRows(): HTMLElement[] {
    return [...this._tree.querySelectorAll<HTMLElement>('.ms-TreeRow')].filter(r => r.offsetParent !== null);
  }

  private _focusRow(row: HTMLElement): void {
    this._tree.querySelectorAll<HTMLElement>('.ms-TreeRow[tabindex="0"]').forEach(r => (r.tabIndex = -1));
    row.tabIndex = 0;
    row.focus();
    row.scrollIntoView({ block: 'nearest' });
  }

  private _onKey(event: KeyboardEvent): void {
    const row = (event.target as HTMLElement).closest<HTMLElement>('.ms-TreeRow');
    if (!row) {
      return;
    }
    const rows = this._visibleRows();
    const i = rows.indexOf(row);
    const inner = row.hasAttribute('aria-expanded');
    const open = row.getAttribute('aria-expanded') === 'true';
    const level = Number(row.getAttribute('aria-level'));
    let target: HTMLElement | undefined;
    switch (event.key) {
      case 'ArrowDown':
        target = rows[i + 1];
        break;
      case 'ArrowUp':
        target = rows[i - 1];
        if (!target) {
          this._filter.focus();
        }
        break;
      case 'Home':
        target = rows[0];
        break;
      case 'End':
        target = rows[rows.length - 1];
        break;
      case 'ArrowRight':
        if (inner && !open) {
          this._toggle(row, true);
        } else if (inner) {
          target = rows[i + 1];
        }
        break;
      case 'ArrowLeft':
        if (inner && open) {
          this._toggle(row, false);
        } else {
          target = rows
            .slice(0, i)
            .reverse()
            .find(r => Number(r.getAttribute('aria-level')) === level - 1);
        }
        break;
      case 'Enter':
      case ' ':
        if (inner) {
          this._toggle(row);
        } else {
          void this._select(row.dataset.path ?? '', row);
        }
        break;
      default:
        return;
    }
    event.preventDefault();
    event.stopPropagation();
    if (target) {
      this._focusRow(target);
    }
  }

  // ---- details ----

  private async _select(name: string, row: HTMLElement): Promise<void> {
    this._tree.querySelectorAll('.ms-mod-selected').forEach(n => {
      n.classList.remove('ms-mod-selected');
      n.setAttribute('aria-selected', 'false');
    });
    row.classList.add('ms-mod-selected');
    row.setAttribute('aria-selected', 'true');
    this._selected = name;
    const ticket = ++this._detailTicket;
    this._showDetail([h('div', 'ms-CheckpointViewer-placeholder', `Reading ${name}…`)]);
    try {
      const detail = await fetchTensor(this._path, name);
      if (ticket === this._detailTicket) {
        this._renderDetail(detail);
      }
    } catch (error) {
      if (ticket === this._detailTicket) {
        this._showDetail([h('div', 'ms-CheckpointViewer-error', (error as Error).message)]);
      }
    }
  }

  private _showDetail(parts: HTMLElement[], histogram: HistogramBox | null = null): void {
    this._histogram?.dispose();
    this._histogram = histogram;
    this._detail.replaceChildren(...parts);
  }

  private _renderDetail(d: ITensorDetail): void {
    const title = h('div', 'ms-Detail-title', d.name);
    const meta = h(
      'div',
      'ms-Detail-meta',
      `${d.dtype} · shape ${shapeText(d.shape)} · ${formatInt(d.numel)} values · ${formatBytes(d.nbytes)}`
    );
    if (d.group !== 'weights') {
      meta.append(' · ', h('span', `ms-GroupTag ms-mod-group-${d.group}`, d.group));
    } else {
      meta.append(` · ${d.group}`);
    }
    const parts: HTMLElement[] = [title, meta];
    let histogram: HistogramBox | null = null;
    const s = d.stats;
    if (s) {
      const finite = s.count - s.nan_count - s.inf_count;
      const none = finite === 0 ? 'no finite values' : null;
      const table = h('table', 'ms-Stats');
      const share = (n: number) => (s.count ? ` (${((n / s.count) * 100).toFixed(1)} %)` : '');
      const rows: [string, string, boolean][] = [
        ['mean', none ?? formatNumber(s.mean), false],
        ['std', none ?? formatNumber(s.std), false],
        ['min', none ?? formatNumber(s.min), false],
        ['max', none ?? formatNumber(s.max), false],
        ['mean |x|', none ?? formatNumber(s.mean_abs), false],
        ['zeros', `${((s.zero_fraction ?? 0) * 100).toFixed(1)} %`, false],
        ['NaN', `${formatInt(s.nan_count)}${s.nan_count ? share(s.nan_count) : ''}`, s.nan_count > 0],
        ['Inf', `${formatInt(s.inf_count)}${s.inf_count ? share(s.inf_count) : ''}`, s.inf_count > 0]
      ];
      for (const [k, v, warn] of rows) {
        const tr = h('tr');
        tr.dataset.stat = k;
        if (warn) {
          tr.classList.add('ms-mod-warn');
        }
        tr.append(h('th', '', k), h('td', '', v));
        table.append(tr);
      }
      parts.push(table);
      if (d.histogram && finite > 0) {
        histogram = new HistogramBox(d.histogram.counts, d.histogram.edges);
        parts.push(histogram.node);
        const left = [
          s.nan_count ? `${formatInt(s.nan_count)} NaN` : '',
          s.inf_count ? `${formatInt(s.inf_count)} Inf` : ''
        ].filter(Boolean);
        parts.push(
          h(
            'div',
            'ms-Detail-caption',
            `${formatInt(finite)} finite values in ${d.histogram.counts.length} bins` +
              (left.length ? `; ${left.join(' and ')} not drawn` : '')
          )
        );
      }
    }
    if (d.note) {
      parts.push(h('div', 'ms-CheckpointViewer-note', d.note));
    }
    if (d.slices) {
      const label = d.slices.length === 1 ? 'stored whole' : `assembled from ${d.slices.length} slices`;
      const list = h('ul', 'ms-Detail-slices');
      for (const where of d.slices.slice(0, 32)) {
        list.append(h('li', '', where.text));
      }
      parts.push(h('div', 'ms-Detail-previewLabel', label), list);
    }
    if (d.preview !== null) {
      const unknown = s ? (s.inf_count === 0 ? 'NaN' : s.nan_count === 0 ? 'Inf' : 'NaN/Inf') : '—';
      const value = (v: unknown): string =>
        v === null ? unknown : formatNumber(v as number | string);
      const text =
        typeof d.preview === 'string'
          ? JSON.stringify(d.preview)
          : d.preview
              .map(v => (Array.isArray(v) ? `${value(v[0])}+${value(v[1])}j` : value(v)))
              .join(', ') + (d.numel > d.preview.length ? ', …' : '');
      parts.push(h('div', 'ms-Detail-previewLabel', 'first values'), h('code', 'ms-Detail-preview', text));
    }
    this._showDetail(parts, histogram);
  }

  private _path: string;
  private _header: HTMLDivElement;
  private _filter: HTMLInputElement;
  private _groupBar: HTMLDivElement;
  private _note: HTMLDivElement;
  private _tree: HTMLDivElement;
  private _detail: HTMLDivElement;
  private _filterTimer = 0;
  private _ticket = 0;
  private _detailTicket = 0;
  private _selected = '';
  private _expanded = new Map<string, boolean>();
  private _hidden = new Set(HIDDEN_BY_DEFAULT);
  private _knownGroups: string[] = ['weights'];
  private _histogram: HistogramBox | null = null;
  private _resize: ResizeObserver;
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
