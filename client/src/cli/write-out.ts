/** Writing job output to our own stdout/stderr without unbounded buffering. */
import { once } from 'node:events';

/** Writes and, when the stream's buffer is full, waits for 'drain' (or the stream's end). */
export async function writeOut(stream: NodeJS.WriteStream, data: Buffer): Promise<void> {
  if (stream.write(data)) return;
  await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
}
