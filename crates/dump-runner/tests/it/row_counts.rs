//! Row counts: for generated tables whose values hold newlines, tabs, backslashes,
//! `\.` and quotes (and tables with no rows, and names that need quoting), the
//! counts `dump` records from the real `pg_dump` stream equal `count(*)`.

use std::collections::BTreeMap;
use std::time::Duration;

use dump_runner::{Cancellation, DumpJob, dump};
use fixtures::TestDb;
use proptest::prelude::*;

/// Values that stress COPY's text format: each must stay inside its one row line.
fn hostile_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("\\.".to_owned()),
        Just("\n\\.\n".to_owned()),
        Just("tab\there".to_owned()),
        Just("back\\slash\\".to_owned()),
        Just("\r\n".to_owned()),
        Just(String::new()),
        Just("COPY public.x (a) FROM stdin;".to_owned()),
        Just("-- Data for Name: x; Type: TABLE DATA; Schema: public".to_owned()),
        "[a-z\\\\\\n\\t.\" ]{0,20}",
    ]
}

/// A table's rows: a nullable and a non-null text column.
type Rows = Vec<(Option<String>, String)>;

/// Tables: a name (some needing quotes) and rows of one or two columns, some NULL.
fn tables() -> impl Strategy<Value = Vec<(String, Rows)>> {
    let name = prop_oneof![
        "[a-z]{1,8}",
        Just("Mixed Case".to_owned()),
        Just("with \"quote\"".to_owned()),
        Just("dot.ted".to_owned()),
    ];
    let rows = proptest::collection::vec(
        (proptest::option::of(hostile_value()), hostile_value()),
        0..30,
    );
    proptest::collection::btree_map(name, rows, 1..5)
        .prop_map(|tables| tables.into_iter().collect())
}

fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn counts_from_the_stream_equal_count_star(tables in tables()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
        let (db, role, expected) = runtime.block_on(async {
            let db = TestDb::new().await.unwrap();
            let client = db.connect().await.unwrap();
            client.batch_execute("create schema \"odd schema\"").await.unwrap();
            for (index, (name, rows)) in tables.iter().enumerate() {
                let schema = if index % 2 == 0 { "public" } else { "\"odd schema\"" };
                let table = format!("{schema}.{}", quote(name));
                // The rows arrive as two arrays and become the table in one
                // statement.
                let a: Vec<Option<String>> = rows.iter().map(|(a, _)| a.clone()).collect();
                let b: Vec<String> = rows.iter().map(|(_, b)| b.clone()).collect();
                client
                    .execute(
                        &format!(
                            "create table {table} as select a, b from unnest($1::text[], $2::text[]) as r(a, b)"
                        ),
                        &[&a, &b],
                    )
                    .await
                    .unwrap();
            }
            let mut expected = BTreeMap::new();
            let names = client
                .query(
                    "select format('%I.%I', n.nspname, c.relname) from pg_class c \
                     join pg_namespace n on n.oid = c.relnamespace \
                     where c.relkind = 'r' and n.nspname not in ('pg_catalog', 'information_schema')",
                    &[],
                )
                .await
                .unwrap();
            for row in names {
                let table: String = row.get(0);
                let count: i64 = client
                    .query_one(&format!("select count(*) from {table}"), &[])
                    .await
                    .unwrap()
                    .get(0);
                expected.insert(table, u64::try_from(count).unwrap());
            }
            let role = db.create_backup_role("counting").await.unwrap();
            (db, role, expected)
        });
        let out = tempfile::tempdir().unwrap();
        let output = out.path().join("supabase_db.sql.gz");
        let dsn = dsn::Dsn::parse(&db.url_as(&role, "counting")).unwrap();
        let cancellation = Cancellation::new();
        let dumped = dump(&DumpJob {
            program: &db.server().cluster().unwrap().bin_dir().join("pg_dump"),
            dsn: &dsn,
            output: &output,
            timeout: Duration::from_secs(120),
            compression: dump_runner::Compression::gzip(1),
            recipients: None,
            cancellation: &cancellation,
            progress_interval: dump_runner::PROGRESS_INTERVAL,
        })
        .unwrap();
        prop_assert_eq!(dumped.written.row_counts, Some(expected));
    }
}
