//! Small updates of the kernel's `inet kleene` table.
//!
//! Replacing the whole table costs ~20 ms on this kernel whatever its size: touching a chain,
//! or deleting anything, makes the commit wait for an RCU grace period. Adding set and map
//! elements does not. Most changes (a network, a container, a published port) only change
//! elements, so when the new script differs from the one last loaded only inside
//! `elements = { ... }` blocks, the update deletes the elements that went and adds the ones
//! that came; anything else falls back to the full replacement.

use super::nft::TABLE;
use std::collections::{BTreeMap, HashSet};

/// A rendered script split into its shape (everything but set elements) and the elements of
/// each named set or map.
#[derive(Debug, PartialEq, Eq)]
struct Split<'a> {
    shape: String,
    elements: BTreeMap<&'a str, (&'a str, Vec<&'a str>)>,
}

/// Splits a script written by [`super::nft::render`]: a set with elements is written as
/// `\t(set|map) NAME { ...;` then `\t\telements = {`, one element per line, `\t\t}`, `\t}`.
fn split(script: &str) -> Split<'_> {
    let mut shape = String::with_capacity(script.len());
    let mut elements = BTreeMap::new();
    let mut current: Option<(&str, &str)> = None;
    let mut in_elements = false;
    for line in script.lines() {
        let trimmed = line.trim_start();
        if in_elements {
            if trimmed == "}" {
                in_elements = false;
            } else if let Some((kind, name)) = current {
                let e = trimmed.trim_end_matches(',');
                elements.entry(name).or_insert((kind, Vec::new())).1.push(e);
            }
            continue;
        }
        if trimmed == "elements = {" {
            in_elements = true;
            continue;
        }
        let mut words = trimmed.split_whitespace();
        if let (Some(kind @ ("set" | "map")), Some(name)) = (words.next(), words.next()) {
            current = Some((kind, name));
            elements.entry(name).or_insert((kind, Vec::new()));
            // An empty set closes on its own line (`... ; }`): give it the shape of a full one.
            if let Some(open) = line.strip_suffix(" }") {
                shape.push_str(open);
                shape.push_str("\n\t}\n");
                continue;
            }
        }
        shape.push_str(line);
        shape.push('\n');
    }
    Split { shape, elements }
}

/// The key of an element: what `delete element` names (no comment, no map value).
fn key(element: &str) -> &str {
    let e = element.split(" comment ").next().unwrap_or(element);
    e.split(" : ").next().unwrap_or(e).trim()
}

/// The element-only update from `old` to `new` (empty when nothing changed), or None when
/// the shape changed.
pub fn delta(old: &str, new: &str) -> Option<String> {
    let (old, new) = (split(old), split(new));
    if old.shape != new.shape {
        return None;
    }
    let (mut deletes, mut adds) = (String::new(), String::new());
    for (name, (_, elements)) in &new.elements {
        let before: &[&str] = old.elements.get(name).map_or(&[], |(_, e)| e);
        // Sets hold thousands of elements at scale: compare through hash sets.
        let (was, is): (HashSet<&str>, HashSet<&str>) =
            (before.iter().copied().collect(), elements.iter().copied().collect());
        let gone: Vec<&str> = before.iter().filter(|e| !is.contains(*e)).map(|e| key(e)).collect();
        let came: Vec<&str> = elements.iter().filter(|e| !was.contains(*e)).copied().collect();
        if !gone.is_empty() {
            deletes.push_str(&format!("delete element {TABLE} {name} {{ {} }}\n", gone.join(", ")));
        }
        if !came.is_empty() {
            adds.push_str(&format!("add element {TABLE} {name} {{\n\t{}\n}}\n", came.join(",\n\t")));
        }
    }
    Some(deletes + &adds)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "table inet kleene {}\ndelete table inet kleene\ntable inet kleene {\n\tset s4 { type ipv4_addr; flags interval;\n\t\telements = {\n\t\t\t10.0.0.0/24 comment \"network a\",\n\t\t\t10.1.0.0/24 comment \"network b\"\n\t\t}\n\t}\n\tset e4 { type ipv4_addr; }\n\tchain c {\n\t\tip saddr @s4 drop\n\t}\n}\n";

    #[test]
    fn only_changed_sets_are_rewritten() {
        let b = A.replace("10.1.0.0/24 comment \"network b\"", "10.2.0.0/24 comment \"network c\"");
        assert_eq!(
            delta(A, &b).unwrap(),
            "delete element inet kleene s4 { 10.1.0.0/24 }\nadd element inet kleene s4 {\n\t10.2.0.0/24 comment \"network c\"\n}\n"
        );
        assert_eq!(delta(A, A).unwrap(), "", "nothing changed, nothing to load");
    }

    #[test]
    fn emptied_and_filled_sets() {
        let emptied = A.replace("\n\t\telements = {\n\t\t\t10.0.0.0/24 comment \"network a\",\n\t\t\t10.1.0.0/24 comment \"network b\"\n\t\t}\n\t}", " }");
        assert_eq!(delta(A, &emptied).unwrap(), "delete element inet kleene s4 { 10.0.0.0/24, 10.1.0.0/24 }\n");
        assert!(delta(&emptied, A).unwrap().starts_with("add element inet kleene s4 {\n\t10.0.0.0/24"));
    }

    #[test]
    fn a_changed_rule_needs_the_full_replacement() {
        assert_eq!(delta(A, &A.replace("drop", "accept")), None);
        assert_eq!(delta(A, &A.replace("\tset e4 { type ipv4_addr; }\n", "")), None);
    }
}
