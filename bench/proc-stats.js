// CPU time and peak memory of a child process, read from Linux's /proc (the bench runs on Linux only).
import { readdirSync, readFileSync } from 'node:fs';

const TICKS_PER_SECOND = 100; // USER_HZ on Linux

/** User plus system CPU seconds `pid` has used so far. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name, which may contain spaces, start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
}

/** Peak resident set size of `pid` so far, in MiB (VmHWM). */
export function peakRssMiB(pid) {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /VmHWM:\s+(\d+) kB/.exec(status);
  return match ? Number(match[1]) / 1024 : Number.NaN;
}

/** The pids of `pid`'s descendants (children of every thread, recursively), from /proc. */
function descendants(pid) {
  const found = [];
  let tasks = [];
  try {
    tasks = readdirSync(`/proc/${pid}/task`);
  } catch {
    return found;
  }
  for (const tid of tasks) {
    let children = '';
    try {
      children = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8');
    } catch {
      continue;
    }
    for (const child of children.split(' ').filter(Boolean)) {
      found.push(Number(child), ...descendants(Number(child)));
    }
  }
  return found;
}

/**
 * CPU seconds of `pid` and every process it started, as an outside observer counts a server (a wrapper
 * that spawns the real server, or a server with workers, is charged in full). A child that exited is no
 * longer counted: the servers here keep theirs for their whole life.
 */
export function treeCpuSeconds(pid) {
  let sum = 0;
  for (const one of [pid, ...descendants(pid)]) {
    try {
      sum += cpuSeconds(one);
    } catch {
      // Gone between the listing and the read.
    }
  }
  return sum;
}
