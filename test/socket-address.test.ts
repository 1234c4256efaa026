import { describe, expect, it } from 'vitest';
import { describeAddress, socketAddressOf } from '../src/cli/socket-address.js';

describe('--to / --listen addresses', () => {
  it.each([
    ['127.0.0.1:22', { kind: 'tcp', host: '127.0.0.1', port: 22 }],
    ['localhost:6379', { kind: 'tcp', host: 'localhost', port: 6379 }],
    ['2222', { kind: 'tcp', host: '127.0.0.1', port: 2222 }],
    ['[::1]:8080', { kind: 'tcp', host: '::1', port: 8080 }],
    ['unix:/run/app.sock', { kind: 'path', path: '/run/app.sock' }],
    ['\\\\.\\pipe\\edgepipe-app', { kind: 'path', path: '\\\\.\\pipe\\edgepipe-app' }],
    ['\\\\?\\pipe\\app', { kind: 'path', path: '\\\\?\\pipe\\app' }],
  ])('reads %s', (text, expected) => {
    expect(socketAddressOf(text, '--to')).toEqual(expected);
  });

  it.each(['', 'unix:', 'host', 'host:0', 'host:65536', ':22', '::1:22', 'host:22:33', '/run/app.sock'])(
    "refuses '%s' with a line naming the flag",
    (text) => {
      expect(() => socketAddressOf(text, '--listen')).toThrow(/^--listen: /);
    },
  );

  it('writes a v6 address back in brackets', () => {
    expect(describeAddress({ kind: 'tcp', host: '::1', port: 22 })).toBe('[::1]:22');
    expect(describeAddress({ kind: 'path', path: '/tmp/a.sock' })).toBe('/tmp/a.sock');
  });
});
