/**
 * What every jigctl command registration shares: the connection options, `--dut`, the command
 * words after `--`, and FlagsOf, which turns a command's yargs builder into the flags type its
 * handler takes, so a flag is declared once. Cheap to import (only yargs' types): jigctl loads it
 * at every start, and handlers are imported lazily inside each command's handler.
 */
import type { Argv } from 'yargs';
import type { ConnectionFlags } from '../../connection.js';

/** Where handlers leave the code jigctl exits with (yargs does not pass a handler's result on). */
export interface Outcome {
  exitCode: number;
}

/** Adds one top-level command (with its subcommands) to jigctl. */
export type AddCommand = (y: Argv, outcome: Outcome) => Argv;

/** `keep-kernel-lines` → `keepKernelLines`, as yargs names the camel-case copy of a flag. */
type CamelCase<K extends string> = K extends `${infer Head}-${infer Tail}`
  ? `${Head}${Capitalize<CamelCase<Tail>>}`
  : K;

/** Options yargs may leave out are optional properties, as a hand-written flags interface has them. */
type OptionalWhereUndefined<T> = { [K in keyof T as undefined extends T[K] ? never : K]: T[K] } & {
  [K in keyof T as undefined extends T[K] ? K : never]?: T[K];
};

/** Flattens an intersection for readable hovers and error messages. */
type Flat<T> = { [K in keyof T]: T[K] };

/** The options a yargs builder declares, each under its camel-case name only. */
type CamelOptions<T> = { [K in keyof T as K extends string ? CamelCase<K> : never]: T[K] };

/** The options yargs inferred for an Argv. */
type OptionsOf<A> = A extends Argv<infer T> ? T : never;

/** Options as a handler reads them: camel-case names, choices as unions, absent ones optional. */
type FlagsOfOptions<T> = Flat<OptionalWhereUndefined<CamelOptions<T>>>;

/**
 * The flags a command's handler reads, derived from the command's builder (`typeof builder`), so
 * an option is declared once: in the builder.
 */
export type FlagsOf<B extends (y: never) => Argv<unknown>> = FlagsOfOptions<OptionsOf<ReturnType<B>>>;

/** Options every command that talks to an agent accepts. */
export function connectionOptions<T>(y: Argv<T>) {
  return y
    .option('server', {
      alias: 'addr',
      type: 'string',
      describe: 'agent HOST:PORT, or unix:PATH of its local endpoint inside a job (env JIGLET_ADDR)',
      group: 'Connection:',
    })
    .option('ca', { type: 'string', describe: 'CA certificate (env JIGLET_CA)', group: 'Connection:' })
    .option('cert', {
      type: 'string',
      describe: 'client certificate (env JIGLET_CERT)',
      group: 'Connection:',
    })
    .option('key', { type: 'string', describe: 'client key (env JIGLET_KEY)', group: 'Connection:' })
    .option('context', {
      type: 'string',
      describe: 'named context from the config file',
      group: 'Connection:',
    })
    .option('lease', {
      type: 'string',
      describe: 'lease id to carry on mutating calls (env JIGLET_LEASE)',
      group: 'Connection:',
    });
}

/** True when A and B are the same type. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;

/** A compile-time check: the options above and the library's ConnectionFlags name the same flags. */
export const CONNECTION_FLAGS_AGREE: Same<
  FlagsOfOptions<OptionsOf<ReturnType<typeof connectionOptions<object>>>>,
  ConnectionFlags
> = true;

/**
 * `--dut`, required unless JIGLET_DUT names one: inside a job (or `claim --exec`) that is the DUT
 * it holds, so `jigctl power on` acts on it.
 */
export function dutOption() {
  const held = process.env.JIGLET_DUT || undefined;
  // A default satisfies yargs' demand, so the flag is required only when JIGLET_DUT is unset.
  return held === undefined
    ? ({ type: 'string', demandOption: true, describe: 'the DUT' } as const)
    : ({
        type: 'string',
        demandOption: true,
        default: held,
        describe: 'the DUT (default: JIGLET_DUT)',
      } as const);
}

/** The words after `--` (or the positional words), as the command to run. */
export function commandWords(argv: { _: (string | number)[]; '--'?: (string | number)[] }): string[] {
  return [...argv._.slice(1), ...(argv['--'] ?? [])].map(String);
}

/** The `-o text|json` most commands take. */
export function textOrJson() {
  return { alias: 'o', choices: ['text', 'json'] as const, default: 'text' as const };
}
