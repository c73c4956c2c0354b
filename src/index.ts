/**
 * effect-taskiq: a distributed task queue for Effect, on Redis Streams, wire-compatible with taskiq.
 */
export * as App from "./App.js"
export * as Broker from "./Broker.js"
export * as MemoryBroker from "./Broker/Memory.js"
export * as RedisBroker from "./Broker/Redis.js"
export * as Executor from "./Executor.js"
export * as Producer from "./Producer.js"
export * as RedisConnection from "./RedisConnection.js"
export * as ResultBackend from "./ResultBackend.js"
export * as MemoryResultBackend from "./ResultBackend/Memory.js"
export * as RedisResultBackend from "./ResultBackend/Redis.js"
export * as Task from "./Task.js"
export * as TaskHandle from "./TaskHandle.js"
export * as TaskMessage from "./TaskMessage.js"
export * as TaskRegistry from "./TaskRegistry.js"
export * as TaskResult from "./TaskResult.js"
export * as Taskiq from "./Taskiq.js"
export * as Worker from "./Worker.js"

export { scheduleAsync, scheduleWith } from "./Producer.js"
