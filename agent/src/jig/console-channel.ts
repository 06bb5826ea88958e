/**
 * What exec needs of a console: a way to type, and the DUT's bytes as they arrive. The agent's
 * channel types into the serial capture job's stdin under the console writer and hears the
 * capture's records as the capture monitor decodes them (no polling, no second reader of the log);
 * tests give the same interface a pty running /bin/sh.
 */
import { JigletError } from '../../../protocol/src/errors.js';
import type { ConsoleWriter, DutRuntime } from './dut-runtime.js';
import type { SerialMonitor } from './serial-monitor.js';

/** A console exec types into and reads from. */
export interface ConsoleChannel {
  /** Types bytes on the console. */
  write(bytes: string | Buffer): void;
  /** Hears every byte the DUT sends from now on; returns the function that stops it. */
  onData(listener: (data: Buffer) => void): () => void;
  /** The last console text printed before now (latin1), if the channel remembers it. */
  recent?(): string;
  /** Aborted when the channel is lost (capture restarted, writer taken over); the reason says why. */
  readonly signal: AbortSignal;
}

/** The channel of an agent's DUT, typing as `writer` (held by the caller for the channel's life). */
export function dutChannel(dut: DutRuntime, writer: ConsoleWriter): ConsoleChannel & { close(): void } {
  const monitor: SerialMonitor = dut.requireCapture();
  const lost = new AbortController();
  const onCapture = (): void =>
    lost.abort(
      new JigletError(
        'JIGLET_E_UNAVAILABLE',
        `the serial capture of ${dut.dut.name} restarted during the command (did its port go away?)`,
      ),
    );
  dut.on('capture', onCapture);
  const signal = AbortSignal.any([lost.signal, writer.signal]);
  return {
    signal,
    recent: () => monitor.recentText,
    write(bytes) {
      writer.input().write(typeof bytes === 'string' ? Buffer.from(bytes, 'utf8') : bytes);
    },
    onData(listener) {
      const onRecord = (record: { kind: string; data?: Buffer }): void => {
        if (record.kind === 'chunk' && record.data) listener(record.data);
      };
      monitor.on('record', onRecord);
      return () => monitor.off('record', onRecord);
    },
    close() {
      dut.off('capture', onCapture);
    },
  };
}
