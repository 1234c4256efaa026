import { MemoryBroker } from '../src/broker/memory/memory-broker.js';
import { runBrokerTests } from './broker-contract.js';

runBrokerTests({ name: 'memory', newBroker: async (limits) => new MemoryBroker(limits) });
