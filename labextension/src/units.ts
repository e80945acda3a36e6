/**
 * Sizes and counts, written exactly as ms_notebook/checkpoint/units.py writes them (the one rule, mirrored
 * operation for operation so both print the same text; tests/test_units.py runs both on the same numbers):
 *   bytes  binary units: "288 B", "4.5 KiB", "64.0 KiB", "1.2 MiB"
 *   counts exact below 1,000, else three significant digits: "650", "1.22K", "16.4K", "7.24B"
 *   ints   thousands separators: "18,418"
 * No imports: this file also runs under plain node in the tests.
 */

export const BYTE_UNITS = ['KiB', 'MiB', 'GiB', 'TiB', 'PiB'];
const COUNT_UNITS: [number, string][] = [
  [1e3, 'K'],
  [1e6, 'M'],
  [1e9, 'B'],
  [1e12, 'T']
];

function fixed(scaled: number, decimals: number): string {
  if (decimals === 0) {
    return String(scaled);
  }
  const digits = String(scaled).padStart(decimals + 1, '0');
  return `${digits.slice(0, -decimals)}.${digits.slice(-decimals)}`;
}

/** 1536 -> "1.5 KiB"; below 1024: "288 B". */
export function formatBytes(n: number): string {
  if (Math.abs(n) < 1024) {
    return `${Math.trunc(n)} B`;
  }
  let value = n;
  for (let i = 0; i < BYTE_UNITS.length; i++) {
    value = value / 1024;
    const tenths = Math.floor(Math.abs(value) * 10 + 0.5);
    if (tenths < 10240 || i === BYTE_UNITS.length - 1) {
      return `${n < 0 ? '-' : ''}${fixed(tenths, 1)} ${BYTE_UNITS[i]}`;
    }
  }
  throw new Error('unreachable');
}

/** 650 -> "650", 1216 -> "1.22K", 16448 -> "16.4K". */
export function formatCount(n: number): string {
  n = Math.trunc(n);
  if (Math.abs(n) < 1000) {
    return String(n);
  }
  const sign = n < 0 ? '-' : '';
  const a = Math.abs(n);
  for (let i = 0; i < COUNT_UNITS.length; i++) {
    const [div, suffix] = COUNT_UNITS[i];
    const value = a / div;
    for (const decimals of [2, 1, 0]) {
      if (value < Math.pow(10, 3 - decimals) || decimals === 0) {
        const scaled = Math.floor(value * Math.pow(10, decimals) + 0.5);
        if (scaled < 1000 || (decimals === 0 && i === COUNT_UNITS.length - 1)) {
          return `${sign}${fixed(scaled, decimals)}${suffix}`;
        }
      }
    }
  }
  throw new Error('unreachable');
}

/** 18418 -> "18,418". */
export function formatInt(n: number): string {
  return Math.trunc(n).toLocaleString('en-US');
}
