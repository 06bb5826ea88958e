/**
 * Containment for hosts without usable cgroups (unprivileged agents, some containers): jobs run
 * without limits and the supervisor falls back to signalling the process group. detectContainment
 * logs that once, so nothing here needs to warn per job.
 */
import type { CgroupPaths, JobCgroup, JobCgroupFactory } from './job-cgroup.js';

/** A job "cgroup" that contains nothing: no procs files, always empty, every operation a no-op. */
export class NoJobCgroup implements JobCgroup {
  readonly procsFiles: string[] = [];

  constructor(readonly paths: CgroupPaths = { mode: 'none', dirs: [] }) {}

  async pids(): Promise<number[]> {
    return [];
  }

  async isEmpty(): Promise<boolean> {
    return true;
  }

  async waitEmpty(_timeoutMs: number): Promise<boolean> {
    return true;
  }

  async killAll(): Promise<void> {}

  async oomKilled(): Promise<boolean> {
    return false;
  }

  async remove(): Promise<void> {}
}

/** Hands out NoJobCgroups; limits were validated by the caller and cannot be applied. */
export const noContainment: JobCgroupFactory = {
  async create() {
    return new NoJobCgroup();
  },
};
