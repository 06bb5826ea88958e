/**
 * Why a job was stopped, as the end of "stopped …". The agent's messages and jigctl's both say
 * it, and the stop reasons are part of the wire (JobRecord.stop_reason), so the words live here.
 */
export const STOP_REASON_WORDS: Readonly<Record<string, string>> = {
  request: 'by request',
  timeout: 'at its timeout',
  shutdown: 'when the agent shut down',
  lease: 'when its lease ended',
  error: 'after an error',
};
