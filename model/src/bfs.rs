//! The explicit-state checker: breadth first over every reachable state,
//! so the first violation found has a shortest trace; then, over the
//! explored graph, the two liveness checks a finite acyclic graph makes
//! exact.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// Whether an action is a fault (a crash, a lost answer, an outage...).
/// Convergence is judged once faults stop: in states where no other
/// action is enabled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Step,
    Fault,
}

/// A protocol model: its states, its actions, what must always hold and
/// what it must converge to.
pub trait Model {
    type State: Clone + Eq + Hash + Debug;
    type Action: Clone + Debug;

    fn init(&self) -> Vec<Self::State>;
    /// Every action enabled in `s`.
    fn actions(&self, s: &Self::State, out: &mut Vec<(Self::Action, Kind)>);
    /// The state `a` leads to.
    fn next(&self, s: &Self::State, a: &Self::Action) -> Self::State;
    /// A safety property `s` violates, named.
    fn violation(&self, s: &Self::State) -> Option<String>;
    /// Whether `s` is where the protocol must end up once faults stop.
    fn converged(&self, s: &Self::State) -> bool;
    /// What [`Model::converged`] demands, for a report.
    fn convergence(&self) -> &'static str {
        "convergence once faults stop"
    }
}

/// What a check found.
#[derive(Debug)]
pub struct Report {
    pub states: usize,
    pub transitions: usize,
    pub elapsed: Duration,
    /// The first violation: its property and a shortest trace (the
    /// actions from an initial state, each with the state it led to).
    pub violation: Option<Violation>,
}

#[derive(Debug)]
pub struct Violation {
    pub property: String,
    pub trace: Vec<String>,
}

impl Violation {
    /// Steps in the trace (actions taken from the initial state).
    pub fn len(&self) -> usize {
        self.trace.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "violated: {} ({} steps)", self.property, self.len())?;
        for (i, step) in self.trace.iter().enumerate() {
            writeln!(f, "{i:3}. {step}")?;
        }
        Ok(())
    }
}

struct Node<S, A> {
    state: S,
    parent: Option<(u32, A)>,
}

/// Explores `model` exhaustively. Stops at the first safety violation;
/// otherwise checks, over the whole graph, that no cycle exists (a cycle
/// in a model whose every fault is budgeted and whose clock only moves
/// forward is a spin loop) and that every state where only faults are
/// enabled (or nothing) is converged. `limit` caps the states explored,
/// a guard against a configuration too large for its test.
pub fn check<M: Model>(model: &M, limit: usize) -> Report {
    let started = Instant::now();
    let mut index: HashMap<M::State, u32> = HashMap::new();
    let mut nodes: Vec<Node<M::State, M::Action>> = Vec::new();
    // Successors of each node, with whether the edge is a step.
    let mut edges: Vec<Vec<(u32, Kind)>> = Vec::new();
    let mut transitions = 0usize;
    let mut found: Option<(u32, String)>;
    for s in model.init() {
        if index.contains_key(&s) {
            continue;
        }
        let id = nodes.len() as u32;
        index.insert(s.clone(), id);
        nodes.push(Node {
            state: s,
            parent: None,
        });
        edges.push(Vec::new());
    }
    found = nodes
        .iter()
        .enumerate()
        .find_map(|(id, n)| model.violation(&n.state).map(|p| (id as u32, p)));
    let mut actions = Vec::new();
    let mut head = 0usize;
    while found.is_none() && head < nodes.len() {
        if nodes.len() > limit {
            // Reported with the trace of the newest state: where the
            // exploration was still going.
            found = Some((
                nodes.len() as u32 - 1,
                format!("more than {limit} states: the configuration is too large for this check"),
            ));
            break;
        }
        let id = head as u32;
        head += 1;
        actions.clear();
        model.actions(&nodes[head - 1].state, &mut actions);
        let mut out = Vec::with_capacity(actions.len());
        for (a, kind) in actions.drain(..) {
            let next = model.next(&nodes[head - 1].state, &a);
            transitions += 1;
            if next == nodes[head - 1].state {
                // An action that changes nothing (a duplicate feed event,
                // an outcome fenced off) is no step at all.
                continue;
            }
            let to = match index.get(&next) {
                Some(&to) => to,
                None => {
                    let to = nodes.len() as u32;
                    let bad = model.violation(&next);
                    index.insert(next.clone(), to);
                    nodes.push(Node {
                        state: next,
                        parent: Some((id, a)),
                    });
                    edges.push(Vec::new());
                    if let Some(p) = bad {
                        found = Some((to, p));
                    }
                    to
                }
            };
            out.push((to, kind));
            if found.is_some() {
                break;
            }
        }
        edges[id as usize] = out;
    }
    if found.is_none() {
        found = liveness(model, &nodes, &edges);
    }
    let violation = found.map(|(id, property)| Violation {
        property,
        trace: trace(&nodes, id),
    });
    Report {
        states: nodes.len(),
        transitions,
        elapsed: started.elapsed(),
        violation,
    }
}

fn trace<S: Debug, A: Debug>(nodes: &[Node<S, A>], mut id: u32) -> Vec<String> {
    let mut steps = Vec::new();
    loop {
        let node = &nodes[id as usize];
        match &node.parent {
            Some((parent, a)) => {
                steps.push(format!("{a:?}\n       -> {:?}", node.state));
                id = *parent;
            }
            None => {
                steps.push(format!("init\n       -> {:?}", node.state));
                break;
            }
        }
    }
    steps.reverse();
    steps
}

fn liveness<M: Model>(
    model: &M,
    nodes: &[Node<M::State, M::Action>],
    edges: &[Vec<(u32, Kind)>],
) -> Option<(u32, String)> {
    for (id, out) in edges.iter().enumerate() {
        if !out.iter().any(|(_, k)| *k == Kind::Step) && !model.converged(&nodes[id].state) {
            return Some((
                id as u32,
                format!(
                    "{}: nothing but faults is left to do, yet the state is not converged",
                    model.convergence()
                ),
            ));
        }
    }
    // Kahn's algorithm: what remains once every node without a
    // predecessor is peeled off lies on a cycle or leads into one.
    let mut indegree = vec![0u32; nodes.len()];
    for out in edges {
        for (to, _) in out {
            indegree[*to as usize] += 1;
        }
    }
    let mut ready: Vec<u32> = (0..nodes.len() as u32)
        .filter(|&i| indegree[i as usize] == 0)
        .collect();
    let mut peeled = 0usize;
    while let Some(i) = ready.pop() {
        peeled += 1;
        for (to, _) in &edges[i as usize] {
            indegree[*to as usize] -= 1;
            if indegree[*to as usize] == 0 {
                ready.push(*to);
            }
        }
    }
    if peeled < nodes.len() {
        // A node on a cycle: walk successors that remain until one repeats.
        let mut at = (0..nodes.len()).find(|&i| indegree[i] > 0)? as u32;
        let mut seen = std::collections::HashSet::new();
        while seen.insert(at) {
            at = edges[at as usize]
                .iter()
                .map(|(to, _)| *to)
                .find(|to| indegree[*to as usize] > 0)?;
        }
        return Some((
            at,
            "no spin loops: a cycle of steps returns to this state".into(),
        ));
    }
    None
}
