//! Small updates of the kernel's `inet kleene` table.
//!
//! Replacing the whole table costs ~20 ms on this kernel whatever its size: touching a chain,
//! or deleting anything, makes the commit wait for an RCU grace period. Adding set and map
//! elements does not. Most changes (a network, a container, a published port) only change
//! elements, so when the new [`Table`] differs from the one last loaded only in elements, the
//! update deletes the elements that went and adds the ones that came; anything else falls
//! back to the full replacement.

use super::table::{Element, Table};
use super::TABLE;
use std::collections::HashSet;
use std::fmt::Write;

/// The element changes that turn one table into another with the same sets and chains.
#[derive(Debug, Default)]
pub struct Delta<'a> {
    changes: Vec<SetChange<'a>>,
}

/// One set's elements that went (deleted by key) and came.
#[derive(Debug)]
struct SetChange<'a> {
    set: &'a str,
    gone: Vec<&'a Element>,
    came: Vec<&'a Element>,
}

impl Delta<'_> {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// One script: every delete, then every add (a key whose comment or value changed is
    /// deleted and added again in the same transaction).
    pub fn render(&self) -> String {
        let mut out = String::new();
        for SetChange { set, gone, .. } in self.changes.iter().filter(|c| !c.gone.is_empty()) {
            let _ = write!(out, "delete element {TABLE} {set} {{ ");
            for (i, e) in gone.iter().enumerate() {
                let sep = if i > 0 { ", " } else { "" };
                let _ = write!(out, "{sep}{}", e.key());
            }
            out.push_str(" }\n");
        }
        for SetChange { set, came, .. } in self.changes.iter().filter(|c| !c.came.is_empty()) {
            let _ = writeln!(out, "add element {TABLE} {set} {{");
            for (i, e) in came.iter().enumerate() {
                let sep = if i + 1 < came.len() { "," } else { "" };
                let _ = writeln!(out, "\t{e}{sep}");
            }
            out.push_str("}\n");
        }
        out
    }
}

/// The element-only update from `old` to `new`, or None when anything but elements differs
/// (a set declared otherwise, added, removed or reordered; any chain or rule).
pub fn diff<'a>(old: &'a Table, new: &'a Table) -> Option<Delta<'a>> {
    let same_sets =
        old.sets.len() == new.sets.len() && old.sets.iter().zip(&new.sets).all(|(o, n)| o.same_declaration(n));
    if !same_sets || old.chains != new.chains {
        return None;
    }
    let mut delta = Delta::default();
    for (o, n) in old.sets.iter().zip(&new.sets) {
        if o.elements == n.elements {
            continue;
        }
        // Sets hold thousands of elements at scale: compare through hash sets.
        let (was, is): (HashSet<&Element>, HashSet<&Element>) =
            (o.elements.iter().collect(), n.elements.iter().collect());
        let gone: Vec<&Element> = o.elements.iter().filter(|e| !is.contains(e)).collect();
        let came: Vec<&Element> = n.elements.iter().filter(|e| !was.contains(e)).collect();
        if !gone.is_empty() || !came.is_empty() {
            delta.changes.push(SetChange { set: &n.name, gone, came });
        }
    }
    Some(delta)
}

/// How to bring the kernel from the table stored after the last load to `new`.
#[derive(Debug)]
pub enum Update {
    /// The kernel already has `new`.
    Unchanged,
    /// Only elements differ: this script updates them.
    Elements(String),
    /// Replace the whole table, for this reason.
    Replace(String),
}

/// Decides the update from what the run dir holds (None: nothing). Anything that is not a
/// table this kleene stored, or differs in more than elements, means a full replacement.
pub fn update(stored: Option<&[u8]>, new: &Table) -> Update {
    let Some(bytes) = stored else { return Update::Replace("no record of the table in the kernel".into()) };
    let old = match Table::from_stored(bytes) {
        Ok(old) => old,
        Err(why) => return Update::Replace(why),
    };
    match diff(&old, new) {
        None => Update::Replace("rules or set definitions changed".into()),
        Some(d) if d.is_empty() => Update::Unchanged,
        Some(d) => Update::Elements(d.render()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::table::{Chain, Datatype, Element, Set, Value};
    use super::*;

    fn net(s: &str, comment: &str) -> Element {
        Element::new(vec![Value::Net(s.parse().unwrap())]).comment(comment.into())
    }

    fn table(subnets: Vec<Element>, rule: &str) -> Table {
        Table {
            sets: vec![
                Set::new("s4", vec![Datatype::Ipv4Addr]).interval().with(subnets),
                Set::new("e4", vec![Datatype::Ipv4Addr]),
            ],
            chains: vec![Chain::new("c", None, [rule])],
        }
    }

    fn a() -> Table {
        table(vec![net("10.0.0.0/24", "network a"), net("10.1.0.0/24", "network b")], "ip saddr @s4 drop")
    }

    #[test]
    fn an_element_that_went_is_deleted_by_key_and_one_that_came_is_added() {
        let b = table(vec![net("10.0.0.0/24", "network a"), net("10.2.0.0/24", "network c")], "ip saddr @s4 drop");
        let Update::Elements(script) = update(Some(&a().to_stored()), &b) else { panic!("an element-only change") };
        assert_eq!(
            script,
            "delete element inet kleene s4 { 10.1.0.0/24 }\nadd element inet kleene s4 {\n\t10.2.0.0/24 comment \"network c\"\n}\n"
        );
        assert!(matches!(update(Some(&a().to_stored()), &a()), Update::Unchanged), "nothing changed, nothing to load");
    }

    #[test]
    fn emptied_and_filled_sets() {
        let emptied = table(vec![], "ip saddr @s4 drop");
        let d = diff(&a(), &emptied).unwrap().render();
        assert_eq!(d, "delete element inet kleene s4 { 10.0.0.0/24, 10.1.0.0/24 }\n");
        let d = diff(&emptied, &a()).unwrap().render();
        assert!(d.starts_with("add element inet kleene s4 {\n\t10.0.0.0/24 comment \"network a\",\n"), "{d}");
    }

    #[test]
    fn a_changed_comment_or_value_replaces_the_element() {
        let b = table(vec![net("10.0.0.0/24", "network a"), net("10.1.0.0/24", "network z")], "ip saddr @s4 drop");
        assert_eq!(
            diff(&a(), &b).unwrap().render(),
            "delete element inet kleene s4 { 10.1.0.0/24 }\nadd element inet kleene s4 {\n\t10.1.0.0/24 comment \"network z\"\n}\n"
        );
    }

    #[test]
    fn a_changed_chain_or_set_declaration_needs_the_full_replacement() {
        let elems = || a().sets[0].elements.clone();
        let rule_changed = table(elems(), "ip saddr @s4 accept");
        assert!(diff(&a(), &rule_changed).is_none());
        assert!(matches!(update(Some(&a().to_stored()), &rule_changed), Update::Replace(_)));
        let mut set_gone = a();
        set_gone.sets.pop();
        assert!(diff(&a(), &set_gone).is_none());
        let mut not_interval = a();
        not_interval.sets[1] = Set::new("e4", vec![Datatype::Ipv4Addr]).interval();
        assert!(diff(&a(), &not_interval).is_none());
        let mut chain_added = a();
        chain_added.chains.push(Chain::new("nat_0", None, ["oifname \"eth0\" masquerade"]));
        assert!(diff(&a(), &chain_added).is_none());
    }

    #[test]
    fn a_missing_unparsable_or_foreign_stored_file_means_the_full_replacement() {
        let replace = |bytes: Option<&[u8]>| match update(bytes, &a()) {
            Update::Replace(why) => why,
            other => panic!("{other:?}"),
        };
        assert_eq!(replace(None), "no record of the table in the kernel");
        // The script an older kleene stored, a truncated write, some other JSON.
        assert!(replace(Some(a().render().as_bytes())).starts_with("not a stored kleene table"));
        let good = a().to_stored();
        assert!(replace(Some(&good[..good.len() / 2])).starts_with("not a stored kleene table"));
        assert!(replace(Some(b"{\"sets\": [], \"chains\": []}")).starts_with("not a stored kleene table"));
        let later =
            String::from_utf8(good.clone()).unwrap().replace("\"kleene_nft_table\":1", "\"kleene_nft_table\":2");
        assert_eq!(replace(Some(later.as_bytes())), "stored table has format 2, not 1");
    }

    #[test]
    fn a_stored_element_that_does_not_fit_its_set_means_the_full_replacement() {
        let text = String::from_utf8(a().to_stored()).unwrap();
        assert!(text.contains("{\"Net\":\"10.1.0.0/24\"}"), "{text}");
        // A v6 prefix in a v4 set, an interface name that would break out of its quotes, a
        // port where an address belongs: each would be named by a `delete element`.
        for bad in ["{\"Net\":\"fd00::/64\"}", "{\"Ifname\":\"x\\\" }; flush ruleset\"}", "{\"Port\":22}"] {
            let crafted = text.replace("{\"Net\":\"10.1.0.0/24\"}", bad);
            let Update::Replace(why) = update(Some(crafted.as_bytes()), &a()) else { panic!("{bad} was accepted") };
            assert!(why.starts_with("stored set s4 holds an element of the wrong type"), "{why}");
        }
    }
}
