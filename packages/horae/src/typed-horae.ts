/**
 * The types of a Horae created with `works`: `schedule()` accepts only their ids, each with its param's type.
 * The object is the `Horae` of `@horae/storage`; only its types are narrowed.
 */
import type { ScheduleCallOptions, TaskHandle } from '@horae/core';
import type { CronScheduleOptions, EveryScheduleOptions, Horae, OneTimeScheduleOptions, Schedule } from '@horae/storage';
import type { AnyWorkDefinition } from './define-work.js';

/** The ids of a list of works. */
export type WorkIdOf<W extends readonly AnyWorkDefinition[]> = W[number]['id'];

/** The param `schedule()` accepts for work `Id` of a list of works. */
export type WorkInputOf<W extends readonly AnyWorkDefinition[], Id extends string> = Exclude<Extract<W[number], { id: Id }>['~input'], undefined> extends infer I
  ? [I] extends [never]
    ? unknown
    : I
  : never;

/** `param` as a schedule call takes it: optional only when the work accepts no param. */
export type ParamField<I> = undefined extends I ? { param?: I } : unknown extends I ? { param?: I } : { param: I };

/** A one-time schedule of work `Id`, its param typed. */
export type TypedOneTimeScheduleOptions<W extends readonly AnyWorkDefinition[], Id extends WorkIdOf<W>> = Omit<OneTimeScheduleOptions, 'workId' | 'param'> & {
  /** One of the works given to `createHorae`. */
  workId: Id;
} & ParamField<WorkInputOf<W, Id>>;

/** A recurring schedule (`every` or `cron`) of work `Id`, its param typed. */
export type TypedRecurringScheduleOptions<W extends readonly AnyWorkDefinition[], Id extends WorkIdOf<W>> = (
  | Omit<EveryScheduleOptions, 'workId' | 'param'>
  | Omit<CronScheduleOptions, 'workId' | 'param'>
) & {
  /** One of the works given to `createHorae`. */
  workId: Id;
} & ParamField<WorkInputOf<W, Id>>;

/** A Horae whose `schedule()` knows its works. */
export type TypedHorae<W extends readonly AnyWorkDefinition[]> = Omit<Horae, 'schedule'> & {
  /**
   * Schedules work, durably (see `Horae.schedule`): only the ids of the works given to `createHorae`, each with
   * its param's type. The one-time form comes first: when a call matches neither, TypeScript types its result by
   * the first, and a one-time call's `result` is what a mistyped call most often goes on to read.
   */
  schedule<Id extends WorkIdOf<W>>(options: TypedOneTimeScheduleOptions<W, Id>, call?: ScheduleCallOptions): Promise<TaskHandle>;
  schedule<Id extends WorkIdOf<W>>(options: TypedRecurringScheduleOptions<W, Id>, call?: ScheduleCallOptions): Promise<Schedule>;
};

/** What `createHorae` returns: typed by its works, or the plain `Horae` when it was given none. */
export type HoraeFor<W extends readonly AnyWorkDefinition[]> = W extends readonly [] ? Horae : TypedHorae<W>;
