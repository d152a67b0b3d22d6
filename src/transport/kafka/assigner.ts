import type {
  ClusterMetadata,
  ExtendedGroupProtocolSubscription,
  GroupPartitionsAssignments,
} from '@platformatic/kafka';

/**
 * Kafka's RoundRobinAssignor (protocol name `roundrobin`), as the Java client computes it: all partitions of all
 * subscribed topics, sorted by topic then partition, dealt to the members (sorted by member id) in turn, skipping
 * members not subscribed to a partition's topic. Unlike the client's built-in assigner it honours each member's own
 * subscription, so members of one group may subscribe to different topics.
 */
export function roundRobinAssigner(
  _current: string,
  members: Map<string, ExtendedGroupProtocolSubscription>,
  _topics: Set<string>,
  metadata: ClusterMetadata,
): GroupPartitionsAssignments[] {
  const memberIds = [...members.keys()].sort();
  const subscriptions = new Map<string, Set<string>>();
  const allTopics = new Set<string>();
  for (const id of memberIds) {
    const topics = new Set(members.get(id)?.topics ?? []);
    subscriptions.set(id, topics);
    for (const t of topics) allTopics.add(t);
  }
  const result = new Map<string, GroupPartitionsAssignments>(
    memberIds.map((memberId) => [memberId, { memberId, assignments: new Map() }]),
  );
  let cursor = 0;
  for (const topic of [...allTopics].sort()) {
    const count = metadata.topics.get(topic)?.partitionsCount ?? 0;
    for (let partition = 0; partition < count; partition++) {
      for (let tries = 0; tries < memberIds.length; tries++) {
        const memberId = memberIds[cursor % memberIds.length]!;
        cursor++;
        if (!subscriptions.get(memberId)!.has(topic)) continue;
        const assignments = result.get(memberId)!.assignments;
        let entry = assignments.get(topic);
        if (entry === undefined) {
          entry = { topic, partitions: [] };
          assignments.set(topic, entry);
        }
        entry.partitions.push(partition);
        break;
      }
    }
  }
  return [...result.values()];
}
