/** A storage mux that records its calls, for asserting the medium always goes back to the DUT. */
import type { MuxSide, StorageMux } from '../../../src/storage-mux.js';

/** Records toHost/toDut calls in order; `failOn` makes one of them throw. */
export class RecordingMux implements StorageMux {
  /** Calls in order. */
  readonly calls: Array<'toHost' | 'toDut'> = [];
  /** Side, as the hardware would report it. */
  side: MuxSide = 'dut';
  /** A call that throws instead of switching. */
  failOn: 'toHost' | 'toDut' | undefined;

  /** Records and switches to the host. */
  async toHost(): Promise<void> {
    this.calls.push('toHost');
    if (this.failOn === 'toHost') throw new Error('mux relay stuck');
    this.side = 'host';
  }

  /** Records and switches to the DUT. */
  async toDut(): Promise<void> {
    this.calls.push('toDut');
    if (this.failOn === 'toDut') throw new Error('mux relay stuck');
    this.side = 'dut';
  }

  /** The recorded side. */
  async status(): Promise<MuxSide> {
    return this.side;
  }
}
