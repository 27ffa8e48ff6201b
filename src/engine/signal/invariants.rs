//! The index's consistency check, for tests and fuzz targets.

use super::pattern::classify_pattern;
use super::{Member, PatternKind, SignalIndex, Target, group_key, to_slot};
use crate::protocol::events::is_reserved_channel;

impl SignalIndex {
    /// Panics unless every table agrees with every other (back-pointers, map entries, filed wildcards,
    /// no empty leftovers). For tests and fuzz targets; O(size of the index).
    #[doc(hidden)]
    pub fn check_invariants(&self) {
        assert_eq!(self.memberships.len(), self.subscriptions.len());
        for (slot, subscription) in self.subscriptions.iter() {
            let slot = to_slot(slot);
            let client = &self.clients[subscription.client as usize];
            assert_eq!(client.subscriptions[subscription.in_client as usize], slot);
            let member = Member {
                client: subscription.client,
                subscription: slot,
            };
            match subscription.target {
                Target::Plain(pattern) => assert_eq!(
                    self.patterns[pattern as usize].plain[subscription.in_target as usize],
                    member
                ),
                Target::Group(group) => {
                    let listed = self.groups[group as usize]
                        .members
                        .get(subscription.in_target);
                    // A departed client's slot may have been reused by a compaction since.
                    if client.departed {
                        assert_ne!(listed, Some(member));
                    } else {
                        assert_eq!(listed, Some(member));
                    }
                }
            }
            let key = (subscription.client, subscription.target);
            assert_eq!(self.memberships.get(&key), Some(&slot));
        }
        let listed: usize = self
            .clients
            .iter()
            .map(|(_, c)| c.subscriptions.len())
            .sum();
        assert_eq!(listed, self.subscriptions.len());
        for (slot, client) in self.clients.iter() {
            assert!(!client.subscriptions.is_empty());
            let bytes: usize = client
                .subscriptions
                .iter()
                .map(|&s| self.target_bytes(self.subscriptions[s as usize].target))
                .sum();
            assert_eq!(
                bytes, client.bytes,
                "subscription bytes of client slot {slot}"
            );
            assert_eq!(client.departed, self.departing.contains(&to_slot(slot)));
        }
        let departed: usize = self
            .departing
            .iter()
            .map(|&slot| self.clients[slot as usize].subscriptions.len())
            .sum();
        assert_eq!(departed, self.departed_subscriptions);

        assert_eq!(self.group_slots.len(), self.groups.len());
        for (slot, group) in self.groups.iter() {
            let slot = to_slot(slot);
            assert!(group.attached > 0 && !group.name.is_empty());
            assert!(group.members.len() <= group.attached as usize);
            let entry = &self.patterns[group.pattern as usize];
            assert_eq!(entry.groups[group.in_pattern as usize], slot);
            let mut key = Vec::new();
            let key = group_key(&mut key, group.pattern, &group.name);
            assert_eq!(self.group_slots.get(key), Some(&slot));
        }

        assert_eq!(self.pattern_slots.len(), self.patterns.len());
        let mut wildcards = 0;
        for (slot, entry) in self.patterns.iter() {
            let slot = to_slot(slot);
            assert!(!entry.plain.is_empty() || !entry.groups.is_empty());
            assert_eq!(self.pattern_slots.get(&entry.pattern), Some(&slot));
            assert_eq!(classify_pattern(&entry.pattern), Some(entry.kind));
            assert_eq!(entry.anchor.is_some(), entry.kind == PatternKind::Wildcard);
            let departed = entry
                .plain
                .iter()
                .filter(|member| self.clients[member.client as usize].departed)
                .count();
            assert_eq!(departed, entry.departed_plain as usize);
            if let Some(anchor) = entry.anchor {
                wildcards += 1;
                assert_eq!(self.wildcards.slot_at(&entry.pattern, anchor), Some(slot));
            }
        }
        assert_eq!(
            self.wildcards.len(),
            wildcards,
            "filed patterns without an entry"
        );
        let reserved = self
            .patterns
            .iter()
            .filter(|(_, entry)| self.dollar_rule && is_reserved_channel(&entry.pattern))
            .count();
        assert_eq!(reserved, self.reserved_patterns, "reserved patterns");
    }
}
