//! The talk's service.account answers Create / Read / List over turmoil and over real TCP,
//! from the same handler code.

use std::sync::Arc;

use windtunnel::framework::transport::{TcpTransport, Tokio};

use crate::support::credential;
use windtunnel::framework::identity::{Identity, META_USER};
use windtunnel::framework::{Client, ClientConfig, Context, ErrorKind, Listen, Registry, Server};
use windtunnel::services::account::{
    self, Account, CreateRequest, ListRequest, ListResponse, ReadRequest,
};

use crate::support::{sim, World};

/// A context acting for `user`, signed as the gateway signs it.
fn as_user(client: &Client, user: &str) -> Context {
    let signer = client
        .credential()
        .expect("the test transports hold the key");
    Context::background()
        .with_trace(client.new_trace())
        .with_timeout(std::time::Duration::from_secs(1))
        .with_identity(&Identity::new(user, &["accounts"]), signer)
}

/// Creates two accounts, reads one back, lists by owner, and reads a missing one; a request
/// with no user, or a user written into its metadata without the gateway's signature, gets
/// nothing.
async fn exercise(client: &Client) -> Result<(), Box<dyn std::error::Error>> {
    for (id, owner) in [("acc-1", "alice"), ("acc-2", "alice"), ("acc-3", "bob")] {
        let req = CreateRequest {
            id: id.into(),
            owner: owner.into(),
            name: format!("{owner}'s account"),
        };
        let ctx = as_user(client, owner);
        let created: Account = client.call(&ctx, account::NAME, "create", &req).await?;
        assert_eq!(created.id, id);
    }
    let read_bob = ReadRequest { id: "acc-3".into() };
    let nobody = Context::background().with_timeout(std::time::Duration::from_secs(1));
    let forged = nobody.with_meta(META_USER, "bob");
    for ctx in [&nobody, &forged] {
        let refused = client
            .call::<_, Account>(ctx, account::NAME, "read", &read_bob)
            .await
            .expect_err("no authenticated user");
        assert_eq!(refused.code(), "unauthorized.no_user");
    }
    let ctx = as_user(client, "alice");
    let read: Account = client
        .call(
            &ctx,
            account::NAME,
            "read",
            &ReadRequest { id: "acc-2".into() },
        )
        .await?;
    assert_eq!(read.owner, "alice");
    let listed: ListResponse = client
        .call(
            &ctx,
            account::NAME,
            "list",
            &ListRequest {
                owner: "alice".into(),
            },
        )
        .await?;
    let ids: Vec<_> = listed.accounts.iter().map(|a| a.id.as_str()).collect();
    assert_eq!(ids, ["acc-1", "acc-2"]);
    let missing = client
        .call::<_, Account>(
            &ctx,
            account::NAME,
            "read",
            &ReadRequest { id: "nope".into() },
        )
        .await
        .expect_err("a missing account must not be found");
    assert_eq!(missing.kind(), ErrorKind::NotFound);
    let unknown = client
        .call::<_, Account>(
            &ctx,
            account::NAME,
            "delete",
            &ReadRequest { id: "acc-1".into() },
        )
        .await
        .expect_err("there is no delete endpoint");
    assert_eq!(unknown.code(), "bad_request.endpoint_not_found");
    Ok(())
}

#[test]
fn account_service_answers_create_read_list_over_turmoil() -> turmoil::Result {
    // Goal: the example service works end to end on the simulated network.
    // Method: one server host, one client host, through discovery.
    let world = World::new();
    let mut sim = sim(1);
    let w = world.clone();
    sim.host("account", move || {
        let w = w.clone();
        async move {
            w.serve("account", account::NAME, 0, account::endpoints())
                .await
        }
    });
    let w = world.clone();
    sim.client("client", async move {
        let client = w.client("client");
        exercise(&client).await?;
        Ok(())
    });
    sim.run()
}

#[test]
fn account_service_answers_the_same_over_real_tcp_on_loopback(
) -> Result<(), Box<dyn std::error::Error>> {
    // Goal: the same handler code serves real TCP. Method: server on 127.0.0.1:0.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let registry = Registry::new();
        let transport = Arc::new(TcpTransport::<Tokio>::with_credential(credential("test")));
        let server = Server::with(
            account::config(),
            Arc::new(windtunnel::framework::NullSink),
            Some(registry.clone()),
        );
        server.add_endpoints(account::endpoints());
        let addr = server
            .start(transport.clone(), &Listen::on("127.0.0.1:0"))
            .await?;
        assert!(addr.starts_with("127.0.0.1:"), "advertised {addr}");
        let client = Client::new(ClientConfig::new("test"), transport, registry);
        exercise(&client).await?;
        server.stop().await;
        Ok(())
    })
}

#[test]
fn one_transport_serves_two_services_on_ephemeral_ports_and_stops_each(
) -> Result<(), Box<dyn std::error::Error>> {
    // Goal: listeners are told apart by the address they got, not the one asked for.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let registry = Registry::new();
        let transport = Arc::new(TcpTransport::<Tokio>::with_credential(credential("test")));
        let a = Server::with(
            account::config(),
            Arc::new(windtunnel::framework::NullSink),
            Some(registry.clone()),
        );
        a.add_endpoints(account::endpoints());
        let mut other = account::config();
        other.name = "service.ledger".into();
        let b = Server::with(
            other,
            Arc::new(windtunnel::framework::NullSink),
            Some(registry.clone()),
        );
        b.add_endpoints(account::endpoints());
        let addr_a = a
            .start(transport.clone(), &Listen::on("127.0.0.1:0"))
            .await?;
        let addr_b = b
            .start(transport.clone(), &Listen::on("127.0.0.1:0"))
            .await?;
        assert_ne!(addr_a, addr_b);
        a.stop().await;
        assert!(
            tokio::net::TcpStream::connect(&addr_a).await.is_err(),
            "a stopped listener refuses"
        );
        let client = Client::new(ClientConfig::new("test"), transport, registry);
        let ctx = as_user(&client, "x");
        let listed: ListResponse = client
            .call(
                &ctx,
                "service.ledger",
                "list",
                &ListRequest { owner: "x".into() },
            )
            .await?;
        assert!(listed.accounts.is_empty());
        b.stop().await;
        Ok(())
    })
}
