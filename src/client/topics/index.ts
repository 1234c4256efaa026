// The topic client (issue 17, docs/topic-protocol.md): batching, framing, sealing, publishing, consuming.

export { type BatchQueue, MemoryBatchQueue } from './batch-queue.js';
export { BatchSealer, isSealed, openBatch } from './batch-seal.js';
export { RecordBatcher } from './batcher.js';
export { type ConsumedRecord, type ConsumeOptions, consume } from './consumer.js';
export {
  type AppendAnswer,
  type OutgoingBatch,
  publishBatch,
  type TopicRequestOptions,
} from './publisher.js';
export { decodeRecords, encodeRecords, FramingError, LineDecoder, RecordDecoder } from './record-framing.js';
export { type ReportOptions, report } from './reporter.js';
export type { TopicEvent } from './topic-events.js';
export { ackUrl, topicUrl } from './topic-url.js';
