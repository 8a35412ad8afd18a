//! The reconciliation diff: what a reload asks of the process manager, app by
//! app, from the apps running now and the apps the new config wants.
//!
//! Pure: names in, changes out. The supervisor turns each change into slots
//! started, replaced (blue-green) or stopped.

use crate::config::AppConfig;

/// What happens to one app on reload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new app: start it.
    Add(String),
    /// An app whose settings changed: start a new generation beside the old one,
    /// switch once it is healthy, then drain and stop the old one.
    Replace(String),
    /// Same settings (its line in the file may have moved): leave it alone.
    Keep(String),
    /// Gone from the config: drain and stop it.
    Remove(String),
}

/// Compares the running apps (`current`, the newest generation of each) with the
/// `desired` ones: changes in the desired order, then removals in the current order.
pub fn diff(current: &[&AppConfig], desired: &[AppConfig]) -> Vec<Change> {
    let mut changes: Vec<Change> = desired
        .iter()
        .map(
            |want| match current.iter().find(|have| have.name == want.name) {
                None => Change::Add(want.name.clone()),
                Some(have) if same_app(have, want) => Change::Keep(want.name.clone()),
                Some(_) => Change::Replace(want.name.clone()),
            },
        )
        .collect();
    changes.extend(
        current
            .iter()
            .filter(|have| !desired.iter().any(|want| want.name == have.name))
            .map(|have| Change::Remove(have.name.clone())),
    );
    changes
}

/// True when two app sections would run the same thing: every setting equal,
/// the line of the section aside. (Destructured so a new field cannot be forgotten.)
pub fn same_app(a: &AppConfig, b: &AppConfig) -> bool {
    let AppConfig {
        name,
        line: _,
        hosts,
        run,
        health,
        start_timeout,
    } = a;
    *name == b.name
        && *hosts == b.hosts
        && *run == b.run
        && *health == b.health
        && *start_timeout == b.start_timeout
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AppRun;
    use std::time::Duration;

    fn app(name: &str, command: &str) -> AppConfig {
        AppConfig {
            name: name.to_string(),
            line: 1,
            hosts: vec![format!("{name}.test")],
            run: AppRun::Command {
                command: command.to_string(),
                dir: None,
                env: Vec::new(),
                port: None,
            },
            health: None,
            start_timeout: Duration::from_secs(60),
        }
    }

    fn names(changes: &[Change]) -> Vec<String> {
        changes.iter().map(|c| format!("{c:?}")).collect()
    }

    fn check(current: &[AppConfig], desired: &[AppConfig], want: &[&str]) {
        let current: Vec<&AppConfig> = current.iter().collect();
        assert_eq!(names(&diff(&current, desired)), want);
    }

    #[test]
    fn nothing_to_nothing() {
        check(&[], &[], &[]);
    }

    #[test]
    fn first_start_adds_everything() {
        check(
            &[],
            &[app("a", "x"), app("b", "y")],
            &["Add(\"a\")", "Add(\"b\")"],
        );
    }

    #[test]
    fn unchanged_is_kept() {
        check(&[app("a", "x")], &[app("a", "x")], &["Keep(\"a\")"]);
    }

    #[test]
    fn moved_line_is_kept() {
        let mut moved = app("a", "x");
        moved.line = 40;
        check(&[app("a", "x")], &[moved], &["Keep(\"a\")"]);
    }

    #[test]
    fn changed_command_is_replaced() {
        check(&[app("a", "x")], &[app("a", "y")], &["Replace(\"a\")"]);
    }

    #[test]
    fn changed_hosts_is_replaced() {
        let mut more = app("a", "x");
        more.hosts.push("www.a.test".to_string());
        check(&[app("a", "x")], &[more], &["Replace(\"a\")"]);
    }

    #[test]
    fn changed_health_is_replaced() {
        let mut h = app("a", "x");
        h.health = Some("/healthz".to_string());
        check(&[app("a", "x")], &[h], &["Replace(\"a\")"]);
    }

    #[test]
    fn changed_start_timeout_is_replaced() {
        let mut t = app("a", "x");
        t.start_timeout = Duration::from_secs(5);
        check(&[app("a", "x")], &[t], &["Replace(\"a\")"]);
    }

    #[test]
    fn changed_env_is_replaced() {
        let mut e = app("a", "x");
        if let AppRun::Command { env, .. } = &mut e.run {
            env.push(("K".to_string(), "v".to_string()));
        }
        check(&[app("a", "x")], &[e], &["Replace(\"a\")"]);
    }

    #[test]
    fn command_to_upstream_is_replaced() {
        let mut u = app("a", "x");
        u.run = AppRun::Upstream {
            addr: "127.0.0.1:9".parse().expect("addr"),
        };
        check(&[app("a", "x")], &[u], &["Replace(\"a\")"]);
    }

    #[test]
    fn missing_app_is_removed() {
        check(
            &[app("a", "x"), app("b", "y")],
            &[app("b", "y")],
            &["Keep(\"b\")", "Remove(\"a\")"],
        );
    }

    #[test]
    fn mixed_reload() {
        check(
            &[app("keep", "k"), app("gone", "g"), app("edit", "e1")],
            &[app("edit", "e2"), app("new", "n"), app("keep", "k")],
            &[
                "Replace(\"edit\")",
                "Add(\"new\")",
                "Keep(\"keep\")",
                "Remove(\"gone\")",
            ],
        );
    }
}
