//! A tiny run of the scale benchmark (bench/kube: 20 agents, 2 s) so that it keeps
//! working: every cache syncs, the steady state makes no LIST and no write, and a Node
//! added reaches every agent's Node cache without a request.

#[path = "../../../bench/kube/scale.rs"]
mod scale;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scale_benchmark_runs_small() {
    let opts = scale::Opts {
        agents: 20,
        pods_per_node: 3,
        window: Duration::from_secs(2),
        adds: 1,
        bookmark: Duration::from_millis(300),
        progress: false,
    };
    let r = scale::run(&opts).await;
    let table = scale::table(&r);
    println!("{table}");
    assert_eq!(r.synced, 40, "{table}");
    assert_eq!(
        (r.steady.list, r.steady.get, r.steady.write),
        (0, 0, 0),
        "{table}"
    );
    // One list per cache at start (one page each at this size).
    assert_eq!(r.startup.list, 40, "{table}");
    assert!(r.bytes_down > 0, "bookmarks flow: {table}");
    assert_eq!(r.seen.len(), 20);
    assert!(
        r.seen
            .iter()
            .all(|s| s.is_some_and(|d| d < Duration::from_secs(2))),
        "{table}"
    );
    assert_eq!((r.adds.list, r.adds.get), (0, 0), "{table}");
    assert_eq!(scale::node_name(7), "node-00007");
    assert!(scale::rss_and_threads().0 > 0);
}
