/** Checks of consumer options that every transport makes the same way. */
import { SluiceError } from '../errors.ts';
import type { ConsumerOptions, TopicPartition } from './types.ts';

/** A consumer needs a group id and at least one topic. */
export function requireGroupAndTopics(options: ConsumerOptions): void {
  if (typeof options.groupId !== 'string' || options.groupId.length === 0) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      'A consumer needs a groupId (a non-empty string). Set options.groupId.',
    );
  }
  if (!Array.isArray(options.topics) || options.topics.length === 0) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      'A consumer needs at least one topic. Set options.topics.',
    );
  }
}

/**
 * A partition of a static assignment (`options.assign`) must exist in a subscribed topic. `partitionCount` is the
 * topic's partition count (ignored when the topic is not subscribed).
 */
export function checkStaticPartition(
  tp: TopicPartition,
  topics: readonly string[],
  partitionCount: number,
): void {
  const count = topics.includes(tp.topic) ? partitionCount : 0;
  if (!Number.isInteger(tp.partition) || tp.partition < 0 || tp.partition >= count) {
    throw new SluiceError(
      'SLUICE_CONFIG_INVALID',
      `Cannot assign ${tp.topic}[${tp.partition}]: ` +
        (count === 0
          ? 'the topic is not in options.topics'
          : `topic ${tp.topic} has partitions 0-${count - 1}`) +
        '. Assign existing partitions of the subscribed topics.',
    );
  }
}
