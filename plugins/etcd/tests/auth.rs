//! etcd authentication: the right password works, a wrong one is Unauthenticated, a user
//! without permission is PermissionDenied, and no error ever shows a password.

mod common;

use autocluster_plugin::ErrorKind;
use autocluster_testkit::fixtures::etcd::EtcdServer;
use common::*;

const PASSWORD: &str = "Pw-0f-Root-42";
const WRONG: &str = "Wr0ng-Passw0rd-17";

#[tokio::test]
async fn passwords_permissions_and_secrecy() {
    let etcd = EtcdServer::builder()
        .auth("root", PASSWORD)
        .start()
        .await
        .unwrap();

    let a = backend(&etcd, &[("username", "root"), ("password", PASSWORD)]);
    assert!(!format!("{a:?}").contains(PASSWORD));
    let lease = bounded(a.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap();
    bounded(a.keep_alive(&lease)).await.unwrap();
    let snap = bounded(a.snapshot()).await.unwrap();
    assert_eq!(snap.members.len(), 1);
    let mut watch = a.watch(snap.revision);
    bounded(a.deregister(&lease)).await.unwrap();
    next_changes(&mut watch).await.unwrap();

    let mut errors = Vec::new();
    let wrong = backend(&etcd, &[("username", "root"), ("password", WRONG)]);
    assert!(!format!("{wrong:?}").contains(WRONG));
    let e = bounded(wrong.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(
        e.to_string()
            .contains("etcd authentication failed for user root"),
        "{e}"
    );
    errors.push(e);
    let e = bounded(wrong.snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    errors.push(e);
    let e = next_changes(&mut wrong.watch(snap.revision))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    errors.push(e);

    // no credentials at all
    let anonymous = backend(&etcd, &[]);
    let e = bounded(anonymous.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            e.kind(),
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied
        ),
        "{e}"
    );
    errors.push(e);

    // a user whose role may not write our keys
    etcd.etcdctl(&["role", "add", "outsider"]).await.unwrap();
    etcd.etcdctl(&[
        "role",
        "grant-permission",
        "outsider",
        "--prefix=true",
        "read",
        "/other/",
    ])
    .await
    .unwrap();
    etcd.etcdctl(&["user", "add", "reader:Reader-Pw-9"])
        .await
        .unwrap();
    etcd.etcdctl(&["user", "grant-role", "reader", "outsider"])
        .await
        .unwrap();
    let reader = backend(
        &etcd,
        &[("username", "reader"), ("password", "Reader-Pw-9")],
    );
    let e = bounded(reader.register(&reg("emqx1@192.168.1.162")))
        .await
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    assert!(e.to_string().contains("reader"), "{e}");
    errors.push(e);
    let e = bounded(reader.snapshot()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::PermissionDenied, "{e}");
    errors.push(e);

    for e in &errors {
        for text in [e.to_string(), format!("{e:?}")] {
            for secret in [PASSWORD, WRONG, "Reader-Pw-9"] {
                assert!(!text.contains(secret), "a password in {text}");
            }
        }
    }
}
