/**
 * Calls to the ms_notebook server extension (/ms-notebook/*); on failure an ApiError carrying the server's
 * message text only (no status code, no absolute path).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import { cleanMessage } from './messages';

export interface IEntriesPage {
  columns: string[];
  rows: [string, number[], string, string, number, number][];
  total: number;
  offset: number;
  limit: number;
}

export interface ICheckpointSummary {
  path: string;
  name: string;
  format: string;
  file_size: number;
  num_tensors: number;
  num_params: number;
  has_crc: boolean;
  /** A checkpoint set (folder or index file): what it is and what was chosen; null for one file. */
  set: ISetSummary | null;
  groups: Record<string, { tensors: number; values: number; bytes: number }>;
  entries: IEntriesPage;
  /** matches of the filter per group, before the group cut (absent on servers older than this viewer) */
  filter_matches?: Record<string, number>;
  /** why the filter could not be used (an invalid regular expression), else "" */
  filter_error?: string;
}

export interface ISetSummary {
  kind: string;
  files: number;
  notes: string[];
  strategy: string[];
  ranks: Record<string, string>;
  replicas: string | null;
}

export interface ITensorStats {
  count: number;
  mean: number | null;
  std: number | null;
  min: number | null;
  max: number | null;
  mean_abs: number | null;
  zero_fraction: number | null;
  nan_count: number;
  inf_count: number;
}

export interface ITensorDetail {
  name: string;
  shape: number[];
  dtype: string;
  group: string;
  kind: string;
  numel: number;
  nbytes: number;
  stats: ITensorStats | null;
  histogram: { counts: number[]; edges: number[] } | null;
  /** first values; a non-finite one may come as null (older servers) or as "NaN" / "Infinity" / "-Infinity" */
  preview: unknown[] | string | null;
  note: string;
  /** Which box of the full tensor each rank (or shard) holds; null for one file. */
  slices: { box: number[][]; ranks: number[]; file: string; text: string }[] | null;
}

/** An answer the server refused: `message` is the server's text only (no status code, no absolute path). */
export class ApiError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
    this.name = 'ApiError';
  }
}

async function getJSON<T>(endpoint: string, query: Record<string, string>): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url =
    URLExt.join(settings.baseUrl, 'ms-notebook', endpoint) + URLExt.objectToQueryString(query);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.message || data.reason)) || response.statusText || 'request failed';
    throw new ApiError(cleanMessage(String(message), query.path ?? ''), response.status);
  }
  return data as T;
}

export function fetchCheckpoint(
  path: string,
  filter = '',
  groups: string[] = [],
  limit = 2000
): Promise<ICheckpointSummary> {
  return getJSON<ICheckpointSummary>('checkpoint', {
    path,
    filter,
    groups: groups.join(','),
    limit: String(limit),
    depth: '0'
  });
}

export function fetchTensor(path: string, name: string, bins = 40): Promise<ITensorDetail> {
  return getJSON<ITensorDetail>('tensor', { path, name, bins: String(bins) });
}

/** A statistic or value for a table cell: compact; NaN and ±Inf written as such; null as "—". */
export function formatNumber(v: number | string | null | undefined): string {
  if (v === null || v === undefined) {
    return '—';
  }
  if (typeof v === 'string') {
    const low = v.toLowerCase();
    if (low === 'nan') {
      return 'NaN';
    }
    if (low === 'inf' || low === 'infinity' || low === '+inf' || low === '+infinity') {
      return '+Inf';
    }
    if (low === '-inf' || low === '-infinity') {
      return '−Inf';
    }
    const parsed = Number(v);
    return Number.isNaN(parsed) ? v : formatNumber(parsed);
  }
  if (Number.isNaN(v)) {
    return 'NaN';
  }
  if (!Number.isFinite(v)) {
    return v > 0 ? '+Inf' : '−Inf';
  }
  if (Number.isInteger(v) && Math.abs(v) < 1e15) {
    return v.toLocaleString('en-US');
  }
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}
