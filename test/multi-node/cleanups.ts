/**
 * What a multi-node test leaves behind (temp folders, repositories, worker processes), undone after each test in
 * reverse order, so that a failing test still stops its processes.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach } from 'vitest';

/** Undo steps of the running test; each test file calls {@link undoAfterEach} once. */
export const cleanups: (() => Promise<void> | void)[] = [];

/** Registers the afterEach that runs {@link cleanups}, last first. */
export function undoAfterEach(): void {
  afterEach(async () => {
    for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
  });
}

/** A fresh temp folder, removed after the test. */
export function tempDir(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}
