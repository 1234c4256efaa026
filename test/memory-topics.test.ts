import { MemoryTopics } from '../src/broker/memory/memory-topics.js';
import { runTopicTests } from './topic-contract.js';

runTopicTests({ name: 'memory', newStore: async (options) => new MemoryTopics(options) });
