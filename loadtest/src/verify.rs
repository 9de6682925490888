//! Per-user state verification: what the server acknowledged, per user, against what it holds
//! after the run. A call that failed after its retries is *in doubt*: it may or may not have
//! happened, and both are accepted. Anything else is a problem, named with its user.

use crate::http::{Client, get_json};
use crate::limits;
use crate::scenario::{Scenario, Verify};
use futures::StreamExt as _;
use serde::Serialize;
use serde_json::Value as Json;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What one user's counted calls came to.
#[derive(Default)]
pub(crate) struct Ledger {
    pub acked: u64,
    pub in_doubt: u64,
    pub acked_tags: Vec<String>,
    pub doubtful_tags: Vec<String>,
}

/// The ledgers of every user, one lock each.
pub(crate) struct Ledgers {
    pub users: Vec<Mutex<Ledger>>,
    /// Tags are kept (for the items check) only while their total stays under `TAGS_MAX`.
    pub keep_tags: bool,
    tags: AtomicU64,
}

impl Ledgers {
    pub fn new(users: usize, keep_tags: bool) -> Self {
        Self {
            users: (0..users).map(|_| Mutex::new(Ledger::default())).collect(),
            keep_tags,
            tags: AtomicU64::new(0),
        }
    }

    /// Whether every tag so far was kept (the items check is sound only then).
    pub fn all_tags_kept(&self) -> bool {
        self.keep_tags && self.tags.load(Ordering::Relaxed) <= limits::TAGS_MAX
    }

    fn keep(&self) -> bool {
        self.keep_tags && self.tags.fetch_add(1, Ordering::Relaxed) < limits::TAGS_MAX
    }

    pub fn acknowledged(&self, user: usize, tag: &str) {
        let keep = self.keep();
        let mut l = self.users[user].lock().expect("never poisoned");
        l.acked += 1;
        if keep {
            l.acked_tags.push(tag.to_string());
        }
    }

    pub fn in_doubt(&self, user: usize, tag: &str) {
        let keep = self.keep();
        let mut l = self.users[user].lock().expect("never poisoned");
        l.in_doubt += 1;
        if keep {
            l.doubtful_tags.push(tag.to_string());
        }
    }
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Problem {
    /// The server holds fewer than it acknowledged.
    Lost { user: String, detail: String },
    /// The server holds more than was sent (a call applied twice).
    Duplicated { user: String, detail: String },
    /// The user's state holds another user's call.
    Leaked {
        user: String,
        from: String,
        tag: String,
    },
    /// The state could not be read or did not have the expected shape.
    Unreadable { user: String, detail: String },
}

impl Problem {
    pub fn user(&self) -> &str {
        match self {
            Self::Lost { user, .. }
            | Self::Duplicated { user, .. }
            | Self::Leaked { user, .. }
            | Self::Unreadable { user, .. } => user,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Lost { user, detail } => write!(f, "user {user}: lost update: {detail}"),
            Self::Duplicated { user, detail } => write!(f, "user {user}: duplicate: {detail}"),
            Self::Leaked { user, from, tag } => {
                write!(f, "user {user}: holds user {from}'s call `{tag}`")
            }
            Self::Unreadable { user, detail } => write!(f, "user {user}: {detail}"),
        }
    }
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Verification {
    pub users_checked: usize,
    pub acknowledged: u64,
    pub in_doubt: u64,
    pub problems: Vec<Problem>,
    /// Problems past `PROBLEMS_MAX` are counted, not listed.
    pub problems_not_listed: usize,
    /// The items check was configured but skipped: the run made more than `TAGS_MAX` calls.
    pub items_skipped: bool,
}

/// Reads every user's state and compares it with the ledgers, `VERIFY_CONCURRENCY` users at a
/// time.
pub(crate) async fn verify(
    client: &Client,
    base: &str,
    scenario: &Scenario,
    run: &str,
    ledgers: &Ledgers,
) -> Verification {
    let Verify { count, items } = &scenario.verify;
    let mut out = Verification::default();
    if count.is_none() && items.is_none() {
        return out;
    }
    // Which user each tag belongs to, for naming leaks.
    let check_items = items.is_some() && ledgers.all_tags_kept();
    out.items_skipped = items.is_some() && !check_items;
    let owner: HashMap<String, String> = if check_items {
        let mut m = HashMap::new();
        for (i, l) in ledgers.users.iter().enumerate() {
            let l = l.lock().expect("never poisoned");
            for t in l.acked_tags.iter().chain(&l.doubtful_tags) {
                m.insert(t.clone(), scenario.users.key_of(i));
            }
        }
        m
    } else {
        HashMap::new()
    };
    let mut problems = Vec::new();
    let checks = (0..scenario.users.count).map(|i| {
        let owner = &owner;
        async move {
            let key = scenario.users.key_of(i);
            let fill = |p: &str| {
                p.replace("{user}", &key)
                    .replace("{index}", &scenario.users.index_of(i).to_string())
                    .replace("{run}", run)
            };
            let (acked, in_doubt, acked_tags, doubtful) = {
                let l = ledgers.users[i].lock().expect("never poisoned");
                (
                    l.acked,
                    l.in_doubt,
                    l.acked_tags.clone(),
                    l.doubtful_tags.clone(),
                )
            };
            let mut found = Vec::new();
            if let Some(c) = count {
                let url = format!("{base}{}", fill(&c.path));
                match get_json(client, &url).await {
                    Ok(json) => match json.pointer(&c.pointer).and_then(Json::as_u64) {
                        Some(n) if n < acked => found.push(Problem::Lost {
                            user: key.clone(),
                            detail: format!("the server counts {n}, it acknowledged {acked}"),
                        }),
                        Some(n) if n > acked + in_doubt => found.push(Problem::Duplicated {
                            user: key.clone(),
                            detail: format!(
                                "the server counts {n}, at most {} were sent",
                                acked + in_doubt
                            ),
                        }),
                        Some(_) => {}
                        None => found.push(Problem::Unreadable {
                            user: key.clone(),
                            detail: format!("GET {url}: no number at `{}`", c.pointer),
                        }),
                    },
                    Err(e) => found.push(Problem::Unreadable {
                        user: key.clone(),
                        detail: e,
                    }),
                }
            }
            if let Some(it) = items
                && check_items
            {
                let url = format!("{base}{}", fill(&it.path));
                match get_json(client, &url).await {
                    Ok(Json::Array(list)) => {
                        let mine: HashSet<&String> = acked_tags.iter().chain(&doubtful).collect();
                        let mut seen = HashSet::new();
                        for item in &list {
                            let Some(tag) = item.pointer(&it.tag).and_then(Json::as_str) else {
                                continue;
                            };
                            if !seen.insert(tag.to_string()) {
                                found.push(Problem::Duplicated {
                                    user: key.clone(),
                                    detail: format!("call `{tag}` is there twice"),
                                });
                            } else if !mine.contains(&tag.to_string())
                                && let Some(from) = owner.get(tag)
                            {
                                found.push(Problem::Leaked {
                                    user: key.clone(),
                                    from: from.clone(),
                                    tag: tag.to_string(),
                                });
                            }
                        }
                        for tag in &acked_tags {
                            if !seen.contains(tag) {
                                found.push(Problem::Lost {
                                    user: key.clone(),
                                    detail: format!("acknowledged call `{tag}` is missing"),
                                });
                            }
                        }
                    }
                    Ok(other) => found.push(Problem::Unreadable {
                        user: key.clone(),
                        detail: format!("GET {url}: expected an array, got {other}"),
                    }),
                    Err(e) => found.push(Problem::Unreadable {
                        user: key.clone(),
                        detail: e,
                    }),
                }
            }
            (acked, in_doubt, found)
        }
    });
    // At most VERIFY_CONCURRENCY reads in flight, a new one as soon as one ends.
    let mut checks = futures::stream::iter(checks).buffer_unordered(limits::VERIFY_CONCURRENCY);
    while let Some((acked, in_doubt, found)) = checks.next().await {
        out.users_checked += 1;
        out.acknowledged += acked;
        out.in_doubt += in_doubt;
        problems.extend(found);
    }
    if problems.len() > limits::PROBLEMS_MAX {
        out.problems_not_listed = problems.len() - limits::PROBLEMS_MAX;
        problems.truncate(limits::PROBLEMS_MAX);
    }
    out.problems = problems;
    out
}
