/**
 * Server messages as a person should read them in the viewer: text only, paths relative to the server root.
 * The server already answers with relative paths; this is the viewer's own guard, so an absolute path or an
 * HTTP status that slips through never reaches the user. No imports: tests/test_units.py runs it under node.
 */

const ABSOLUTE_PATH = /(^|[\s'"(\[=])((?:\/|[A-Za-z]:\\)[^\s'"()\[\]]+)/g;

/**
 * A server message as a user should read it: absolute paths become the server-relative `path` when they end
 * with it (else their file name), and a leading "<path>: " (or "<file name>: ") is dropped, as the viewer says
 * which file it is about.
 */
export function cleanMessage(message: string, path = ''): string {
  const relative = message.replace(ABSOLUTE_PATH, (_, lead: string, found: string) => {
    const punctuation = /[:.,;]*$/.exec(found)?.[0] ?? '';
    const posix = found.slice(0, found.length - punctuation.length).replace(/\\/g, '/');
    if (path && (posix === `/${path}` || posix.endsWith(`/${path}`))) {
      return lead + path + punctuation;
    }
    const name = posix.split('/').filter(Boolean).pop() ?? '';
    return lead + name + punctuation;
  });
  const base = path.split('/').pop() ?? '';
  const prefix = [`${path}: `, `${base}: `].find(p => p.length > 2 && relative.startsWith(p));
  const tail = prefix ? relative.slice(prefix.length) : relative;
  return tail.replace(/^\d{3}:\s*/, '');
}

