/**
 * Dot segments in a request target (issue 11, item 3). The URL parser resolves `.` and `..` segments, their
 * percent-encoded spellings (`%2e`, `.%2E`, `%2e%2e`, ...) and backslash-separated ones before the app
 * reads `request.url`, so `GET /../../etc/passwd` would wait on `/etc/passwd`. Nothing leaks, but a
 * request target that names one path and is served as another is where path confusion between a proxy
 * (an ACL on the raw path) and the app (on the resolved one) starts. So a target with such a segment is
 * refused outright, never resolved.
 *
 * Only runtimes that hand over the raw target can be checked: Node's `IncomingMessage.url` (Node, and Bun
 * and Deno through their `node:http`). workerd resolves every spelling before any code of ours runs
 * (measured; see docs/runtimes.md).
 */

/**
 * The segment separators of an http(s) URL path as the URL parser reads them: `/`, and `\` (a special
 * scheme's path treats it as `/`). `%2F` and `%5C` are not separators: they stay part of a segment's name.
 */
const SEPARATOR = /[/\\]/;

/** `scheme://authority` of an absolute-form target (`GET http://host/a HTTP/1.1`). */
const ABSOLUTE_PREFIX = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/[^/\\?#]*/;

/**
 * The first dot segment (`.` or `..`, raw or percent-encoded in any case) in the path of a raw request
 * target, as the client spelled it; `undefined` when there is none. The query and a fragment are not
 * part of the path.
 */
export function dotSegmentIn(target: string): string | undefined {
  const path = target.replace(ABSOLUTE_PREFIX, '').split(/[?#]/, 1)[0]!;
  for (const segment of path.split(SEPARATOR)) {
    // A dot segment is at most `%2e%2e`: six characters.
    if (segment.length === 0 || segment.length > 6) continue;
    const decoded = segment.toLowerCase().replaceAll('%2e', '.');
    if (decoded === '.' || decoded === '..') return segment;
  }
  return undefined;
}

/** The one-line reason a target with a dot segment is refused with. */
export function dotSegmentReason(segment: string): string {
  return `The path has a '${segment}' segment; dot segments are refused, as they would name another path.`;
}
