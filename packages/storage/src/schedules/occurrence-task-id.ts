/**
 * The deterministic task id of a schedule's occurrence: what lets several nodes materialize one occurrence
 * without ever creating it twice, even after its first task has finished.
 */
import { createHash } from 'node:crypto';
import { occurrenceKey } from '@horae/core';

/**
 * The namespace of every occurrence task id (a random UUID fixed once for Horae; changing it would let every
 * node re-create occurrences materialized under the old one).
 */
export const HORAE_OCCURRENCE_NAMESPACE = 'dba5599c-f929-4632-9cb4-26a3a708961f';

const NAMESPACE_BYTES = Buffer.from(HORAE_OCCURRENCE_NAMESPACE.replaceAll('-', ''), 'hex');

/**
 * The id of the task that materializes the occurrence of `scheduleName` at `occurrence`: a name-based UUID
 * (version 5, RFC 9562: SHA-1 over {@link HORAE_OCCURRENCE_NAMESPACE} and `occurrenceKey(scheduleName, occurrence)`).
 *
 * Rule: every node computes the same id for the same (schedule, occurrence time), and different pairs get
 * different ids (up to SHA-1 collisions). A repository refuses a second task with a taken id whatever the first
 * one's state, which is what makes a second materialization of a finished occurrence fail, where the uniqueKey
 * (held only by live tasks) no longer protects.
 *
 * @param scheduleName - the schedule's name
 * @param occurrence - the occurrence time
 * @returns a lowercase UUID string such as `'3f0c…-5…'`
 * @throws InvalidInputError when the name is empty or the date invalid (see `occurrenceKey`)
 *
 * @example
 * ```ts
 * occurrenceTaskId('nightly', new Date('2026-03-08T07:30:00Z')) === occurrenceTaskId('nightly', new Date('2026-03-08T07:30:00Z')); // true
 * ```
 */
export function occurrenceTaskId(scheduleName: string, occurrence: Date): string {
  const key = occurrenceKey(scheduleName, occurrence);
  const hash = createHash('sha1').update(NAMESPACE_BYTES).update(key, 'utf8').digest();
  const bytes = hash.subarray(0, 16);
  bytes[6] = (bytes[6]! & 0x0f) | 0x50; // version 5
  bytes[8] = (bytes[8]! & 0x3f) | 0x80; // RFC 9562 variant
  const hex = bytes.toString('hex');
  return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
}
