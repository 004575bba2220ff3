//! The stage graph: built from the manifest's references, checked for cycles, then sealed.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

/// How two stages are connected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Edge {
    /// The downstream stage reads the upstream stage's outputs; the upstream key enters its cache key.
    Data,
    /// The downstream stage only runs after the upstream one (`needs`).
    Order,
}

/// A graph still being built.
#[derive(Debug, Default)]
pub struct DagBuilder {
    graph: DiGraph<String, Edge>,
    index: BTreeMap<String, NodeIndex>,
    kinds: BTreeMap<String, String>,
}

/// A cycle among stages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cycle {
    /// Every stage in the strongly connected component, sorted.
    pub members: Vec<String>,
    /// One cycle through them, starting and ending at the first member.
    pub path: Vec<String>,
}

impl DagBuilder {
    /// An empty graph.
    pub fn new() -> DagBuilder {
        DagBuilder::default()
    }

    /// Adds a stage (idempotent).
    pub fn add_stage(&mut self, id: &str, kind: &str) {
        if !self.index.contains_key(id) {
            let ix = self.graph.add_node(id.to_owned());
            self.index.insert(id.to_owned(), ix);
        }
        self.kinds.insert(id.to_owned(), kind.to_owned());
    }

    /// Adds an edge from `upstream` to `downstream`; both must have been added. A data edge
    /// wins over an order edge between the same two stages.
    pub fn add_edge(&mut self, upstream: &str, downstream: &str, edge: Edge) {
        let (Some(&a), Some(&b)) = (self.index.get(upstream), self.index.get(downstream)) else {
            return;
        };
        match self.graph.find_edge(a, b) {
            Some(e) => {
                if edge == Edge::Data {
                    self.graph[e] = Edge::Data;
                }
            }
            None => {
                self.graph.add_edge(a, b, edge);
            }
        }
    }

    /// Checks the graph for cycles and seals it.
    pub fn seal(self) -> Result<Dag, Vec<Cycle>> {
        let mut cycles = Vec::new();
        for scc in tarjan_scc(&self.graph) {
            let is_cycle = scc.len() > 1 || self.graph.find_edge(scc[0], scc[0]).is_some();
            if is_cycle {
                cycles.push(self.describe_cycle(&scc));
            }
        }
        if !cycles.is_empty() {
            cycles.sort_by(|a, b| a.members.cmp(&b.members));
            return Err(cycles);
        }
        let order = self.topological_order();
        Ok(Dag {
            graph: self.graph,
            index: self.index,
            kinds: self.kinds,
            order,
        })
    }

    fn describe_cycle(&self, scc: &[NodeIndex]) -> Cycle {
        let members_set: BTreeSet<NodeIndex> = scc.iter().copied().collect();
        let mut members: Vec<String> = scc.iter().map(|&n| self.graph[n].clone()).collect();
        members.sort();
        let start = self.index[&members[0]];
        // Shortest way from `start` back to itself inside the component.
        let mut prev: BTreeMap<NodeIndex, NodeIndex> = BTreeMap::new();
        let mut queue = VecDeque::from([start]);
        let mut found = false;
        'bfs: while let Some(n) = queue.pop_front() {
            let mut next: Vec<NodeIndex> = self
                .graph
                .neighbors_directed(n, Direction::Outgoing)
                .collect();
            next.sort_by(|a, b| self.graph[*a].cmp(&self.graph[*b]));
            for m in next {
                if !members_set.contains(&m) {
                    continue;
                }
                if m == start {
                    prev.insert(start, n);
                    found = true;
                    break 'bfs;
                }
                if let std::collections::btree_map::Entry::Vacant(e) = prev.entry(m) {
                    e.insert(n);
                    queue.push_back(m);
                }
            }
        }
        let mut path = vec![self.graph[start].clone()];
        if found {
            let mut at = prev[&start];
            let mut rev = Vec::new();
            while at != start {
                rev.push(self.graph[at].clone());
                at = prev[&at];
            }
            rev.reverse();
            path.extend(rev);
        }
        path.push(self.graph[start].clone());
        Cycle { members, path }
    }

    /// Kahn's algorithm, taking ready stages in id order so the order is deterministic.
    fn topological_order(&self) -> Vec<String> {
        let mut indegree: BTreeMap<NodeIndex, usize> = BTreeMap::new();
        for n in self.graph.node_indices() {
            indegree.insert(
                n,
                self.graph
                    .neighbors_directed(n, Direction::Incoming)
                    .count(),
            );
        }
        let mut ready: BTreeSet<(String, NodeIndex)> = indegree
            .iter()
            .filter(|(_, d)| **d == 0)
            .map(|(n, _)| (self.graph[*n].clone(), *n))
            .collect();
        let mut order = Vec::with_capacity(self.graph.node_count());
        while let Some(first) = ready.pop_first() {
            let (id, n) = first;
            order.push(id);
            for m in self.graph.neighbors_directed(n, Direction::Outgoing) {
                if let Some(d) = indegree.get_mut(&m) {
                    *d -= 1;
                    if *d == 0 {
                        ready.insert((self.graph[m].clone(), m));
                    }
                }
            }
        }
        order
    }
}

/// A sealed, acyclic stage graph.
#[derive(Clone, Debug)]
pub struct Dag {
    graph: DiGraph<String, Edge>,
    index: BTreeMap<String, NodeIndex>,
    kinds: BTreeMap<String, String>,
    order: Vec<String>,
}

impl Dag {
    /// Stage ids in a topological order (upstream first, ties by id).
    pub fn order(&self) -> &[String] {
        &self.order
    }

    /// The stages `id` depends on, with the kind of each edge, sorted by id.
    pub fn upstream(&self, id: &str) -> Vec<(&str, Edge)> {
        self.neighbours(id, Direction::Incoming)
    }

    /// The stages that depend on `id`, sorted by id.
    pub fn downstream(&self, id: &str) -> Vec<(&str, Edge)> {
        self.neighbours(id, Direction::Outgoing)
    }

    fn neighbours(&self, id: &str, dir: Direction) -> Vec<(&str, Edge)> {
        let Some(&n) = self.index.get(id) else {
            return Vec::new();
        };
        let mut out: Vec<(&str, Edge)> = self
            .graph
            .edges_directed(n, dir)
            .map(|e| {
                let other = if dir == Direction::Incoming {
                    petgraph::visit::EdgeRef::source(&e)
                } else {
                    petgraph::visit::EdgeRef::target(&e)
                };
                (self.graph[other].as_str(), *e.weight())
            })
            .collect();
        out.sort();
        out
    }

    /// Every stage reachable downstream of `id` (not including `id`).
    pub fn all_downstream(&self, id: &str) -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut stack = vec![id.to_owned()];
        while let Some(s) = stack.pop() {
            for (d, _) in self.downstream(&s) {
                if seen.insert(d.to_owned()) {
                    stack.push(d.to_owned());
                }
            }
        }
        seen
    }

    /// The graph in Graphviz DOT; order-only edges are dashed.
    pub fn to_dot(&self, name: &str) -> String {
        let mut out = format!(
            "digraph {} {{\n  rankdir=LR;\n  node [shape=box, style=rounded];\n",
            quote(name)
        );
        for id in &self.order {
            out.push_str(&format!(
                "  {} [label=\"{}\\n{}\"];\n",
                quote(id),
                id,
                self.kinds[id]
            ));
        }
        for id in &self.order {
            for (d, edge) in self.downstream(id) {
                let style = if edge == Edge::Order {
                    " [style=dashed]"
                } else {
                    ""
                };
                out.push_str(&format!("  {} -> {}{};\n", quote(id), quote(d), style));
            }
        }
        out.push_str("}\n");
        out
    }

    /// The graph as a Mermaid flowchart; order-only edges are dotted.
    pub fn to_mermaid(&self) -> String {
        let mut out = String::from("flowchart LR\n");
        for id in &self.order {
            out.push_str(&format!("  {id}[\"{id}<br/><i>{}</i>\"]\n", self.kinds[id]));
        }
        for id in &self.order {
            for (d, edge) in self.downstream(id) {
                let arrow = if edge == Edge::Order { "-.->" } else { "-->" };
                out.push_str(&format!("  {id} {arrow} {d}\n"));
            }
        }
        out
    }
}

fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(stages: &[&str], edges: &[(&str, &str)]) -> DagBuilder {
        let mut b = DagBuilder::new();
        for s in stages {
            b.add_stage(s, "command");
        }
        for (a, c) in edges {
            b.add_edge(a, c, Edge::Data);
        }
        b
    }

    #[test]
    fn orders_upstream_first_with_ties_by_id() {
        let dag = build(&["c", "b", "a", "d"], &[("c", "a"), ("b", "a"), ("a", "d")])
            .seal()
            .unwrap();
        assert_eq!(dag.order(), ["b", "c", "a", "d"]);
        assert_eq!(
            dag.upstream("a"),
            vec![("b", Edge::Data), ("c", Edge::Data)]
        );
        assert_eq!(
            dag.all_downstream("b"),
            BTreeSet::from(["a".to_owned(), "d".to_owned()])
        );
    }

    #[test]
    fn names_every_stage_of_a_cycle() {
        let cycles = build(
            &["a", "b", "c", "x"],
            &[("a", "b"), ("b", "c"), ("c", "a"), ("x", "a")],
        )
        .seal()
        .unwrap_err();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].members, ["a", "b", "c"]);
        assert_eq!(cycles[0].path, ["a", "b", "c", "a"]);
    }

    #[test]
    fn a_self_reference_is_a_cycle() {
        let cycles = build(&["a"], &[("a", "a")]).seal().unwrap_err();
        assert_eq!(cycles[0].path, ["a", "a"]);
    }

    #[test]
    fn renders_dot_and_mermaid() {
        let mut b = build(&["a", "b"], &[("a", "b")]);
        b.add_stage("c", "command");
        b.add_edge("a", "c", Edge::Order);
        let dag = b.seal().unwrap();
        let dot = dag.to_dot("p");
        assert!(dot.contains("\"a\" -> \"b\";"));
        assert!(dot.contains("\"a\" -> \"c\" [style=dashed];"));
        let mermaid = dag.to_mermaid();
        assert!(mermaid.contains("a --> b"));
        assert!(mermaid.contains("a -.-> c"));
    }

    proptest! {
        // Edges only from lower to higher index can never form a cycle, and every
        // edge must point forward in the order the sealed graph gives.
        #[test]
        fn acyclic_graphs_seal_and_order_respects_every_edge(n in 1usize..12, raw in proptest::collection::vec((0usize..12, 0usize..12), 0..40)) {
            let names: Vec<String> = (0..n).map(|i| format!("s{i:02}")).collect();
            let mut b = DagBuilder::new();
            for s in &names { b.add_stage(s, "command"); }
            let mut edges = Vec::new();
            for (x, y) in raw {
                let (x, y) = (x % n, y % n);
                if x < y { b.add_edge(&names[x], &names[y], Edge::Data); edges.push((x, y)); }
            }
            let dag = b.seal().unwrap();
            let pos: BTreeMap<&str, usize> = dag.order().iter().enumerate().map(|(i, s)| (s.as_str(), i)).collect();
            prop_assert_eq!(pos.len(), n);
            for (x, y) in edges { prop_assert!(pos[names[x].as_str()] < pos[names[y].as_str()]); }
        }

        // Adding any backward edge to a chain makes a cycle that names exactly the stages it spans.
        #[test]
        fn a_back_edge_on_a_chain_is_reported_with_its_span(n in 2usize..10, a in 0usize..10, b in 0usize..10) {
            let (lo, hi) = { let (a, b) = (a % n, b % n); if a <= b { (a, b) } else { (b, a) } };
            let names: Vec<String> = (0..n).map(|i| format!("s{i}")).collect();
            let mut builder = DagBuilder::new();
            for s in &names { builder.add_stage(s, "command"); }
            for i in 1..n { builder.add_edge(&names[i - 1], &names[i], Edge::Data); }
            builder.add_edge(&names[hi], &names[lo], Edge::Order);
            let cycles = builder.seal().unwrap_err();
            prop_assert_eq!(cycles.len(), 1);
            let mut want: Vec<String> = names[lo..=hi].to_vec();
            want.sort();
            prop_assert_eq!(&cycles[0].members, &want);
        }
    }
}
