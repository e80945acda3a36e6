/**
 * Calls to the ms_notebook server extension (/ms-notebook/*), with the server's error message on failure.
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

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
  groups: Record<string, { tensors: number; values: number; bytes: number }>;
  entries: IEntriesPage;
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
  preview: unknown[] | string | null;
  note: string;
}

async function getJSON<T>(endpoint: string, query: Record<string, string>): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url =
    URLExt.join(settings.baseUrl, 'ms-notebook', endpoint) +
    URLExt.objectToQueryString(query);
  const response = await ServerConnection.makeRequest(url, {}, settings);
  const text = await response.text();
  let data: any = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.message || data.reason)) || response.statusText;
    throw new Error(`${response.status}: ${message}`);
  }
  return data as T;
}

export function fetchCheckpoint(
  path: string,
  filter = '',
  limit = 2000
): Promise<ICheckpointSummary> {
  return getJSON<ICheckpointSummary>('checkpoint', {
    path,
    filter,
    limit: String(limit),
    depth: '0'
  });
}

export function fetchTensor(path: string, name: string, bins = 40): Promise<ITensorDetail> {
  return getJSON<ITensorDetail>('tensor', { path, name, bins: String(bins) });
}

/** Human-readable byte size. */
export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let value = n;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${n} B` : `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}

/** A number for a table cell: compact, never "NaN". */
export function formatNumber(v: number | null | undefined): string {
  if (v === null || v === undefined) {
    return '—';
  }
  if (Number.isInteger(v) && Math.abs(v) < 1e15) {
    return v.toLocaleString('en-US');
  }
  const a = Math.abs(v);
  return a !== 0 && (a < 1e-3 || a >= 1e5) ? v.toExponential(3) : v.toPrecision(4);
}
