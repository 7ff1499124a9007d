//! Billing: rates, time entries, expenses, invoices (gapless numbering), lines, payments,
//! trust accounts with their ledger, and processed payment-webhook events.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

fn idx(name: &str, table: &'static str, cols: &[&'static str]) -> IndexCreateStatement {
    let mut i = Index::create();
    i.name(name).table(a(table));
    for c in cols {
        i.col(a(c));
    }
    i.to_owned()
}

fn fk(
    name: &str,
    table: &'static str,
    col: &'static str,
    to: &'static str,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .name(name)
        .from(a(table), a(col))
        .to(a(to), a("id"))
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Default hourly rate per timekeeper, and per-case overrides.
        m.create_table(
            Table::create()
                .table(a("billing_user_rate"))
                .col(uuid(a("user_id")).primary_key())
                .col(big_integer(a("rate_cents")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .foreign_key(&mut fk(
                    "fk_billing_user_rate_user",
                    "billing_user_rate",
                    "user_id",
                    "app_user",
                ))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("billing_case_rate"))
                .col(uuid(a("case_id")))
                .col(uuid(a("user_id")))
                .col(big_integer(a("rate_cents")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .primary_key(
                    Index::create()
                        .name("pk_billing_case_rate")
                        .col(a("case_id"))
                        .col(a("user_id")),
                )
                .foreign_key(&mut fk(
                    "fk_billing_case_rate_case",
                    "billing_case_rate",
                    "case_id",
                    "legal_case",
                ))
                .foreign_key(&mut fk(
                    "fk_billing_case_rate_user",
                    "billing_case_rate",
                    "user_id",
                    "app_user",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_billing_case_rate_user",
            "billing_case_rate",
            &["user_id"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(a("time_entry"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("case_id")))
                .col(uuid(a("timekeeper_id")))
                .col(date(a("work_date")))
                .col(integer(a("minutes")))
                .col(big_integer(a("rate_cents")))
                .col(text(a("description")))
                .col(string_len_null(a("task_code"), 4))
                .col(string_len_null(a("activity_code"), 4))
                .col(boolean(a("billable")))
                // Set while the entry is on a non-void invoice: locked against edits.
                .col(uuid_null(a("invoice_id")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .foreign_key(&mut fk(
                    "fk_time_entry_case",
                    "time_entry",
                    "case_id",
                    "legal_case",
                ))
                .foreign_key(&mut fk(
                    "fk_time_entry_timekeeper",
                    "time_entry",
                    "timekeeper_id",
                    "app_user",
                ))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_time_entry_case", &["case_id", "id"][..]),
            (
                "ix_time_entry_unbilled",
                &["case_id", "invoice_id", "work_date"][..],
            ),
            ("ix_time_entry_invoice", &["invoice_id"][..]),
            ("ix_time_entry_timekeeper", &["timekeeper_id"][..]),
        ] {
            m.create_index(idx(name, "time_entry", cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(a("expense"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("case_id")))
                .col(date(a("incurred_on")))
                .col(big_integer(a("amount_cents")))
                .col(text(a("description")))
                .col(string_len_null(a("expense_code"), 4))
                .col(uuid(a("created_by")))
                .col(uuid_null(a("invoice_id")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .foreign_key(&mut fk(
                    "fk_expense_case",
                    "expense",
                    "case_id",
                    "legal_case",
                ))
                .foreign_key(&mut fk(
                    "fk_expense_created_by",
                    "expense",
                    "created_by",
                    "app_user",
                ))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_expense_case", &["case_id", "id"][..]),
            (
                "ix_expense_unbilled",
                &["case_id", "invoice_id", "incurred_on"][..],
            ),
            ("ix_expense_invoice", &["invoice_id"][..]),
            ("ix_expense_created_by", &["created_by"][..]),
        ] {
            m.create_index(idx(name, "expense", cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(a("invoice_number_seq"))
                .col(integer(a("year")).primary_key())
                .col(integer(a("last")))
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(a("invoice"))
                .col(uuid(a("id")).primary_key())
                .col(string_len(a("number"), 24))
                .col(integer(a("year")))
                .col(integer(a("seq")))
                .col(uuid(a("case_id")))
                .col(uuid_null(a("client_id")))
                .col(string_len(a("status"), 16))
                .col(date(a("issued_on")))
                .col(date(a("due_on")))
                .col(string_len(a("currency"), 3))
                .col(big_integer(a("subtotal_cents")))
                .col(big_integer(a("tax_cents")))
                .col(big_integer(a("total_cents")))
                .col(big_integer(a("paid_cents")))
                .col(date_null(a("period_start")))
                .col(date_null(a("period_end")))
                .col(uuid(a("created_by")))
                .col(timestamp_with_time_zone(a("created_at")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .col(timestamp_with_time_zone_null(a("sent_at")))
                .col(timestamp_with_time_zone_null(a("voided_at")))
                .foreign_key(&mut fk(
                    "fk_invoice_case",
                    "invoice",
                    "case_id",
                    "legal_case",
                ))
                .foreign_key(&mut fk(
                    "fk_invoice_client",
                    "invoice",
                    "client_id",
                    "app_user",
                ))
                .foreign_key(&mut fk(
                    "fk_invoice_created_by",
                    "invoice",
                    "created_by",
                    "app_user",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(
            idx("uq_invoice_number", "invoice", &["number"])
                .unique()
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_invoice_created", &["created_at", "id"][..]),
            ("ix_invoice_case", &["case_id", "created_at", "id"][..]),
            ("ix_invoice_client", &["client_id", "created_at", "id"][..]),
            ("ix_invoice_status", &["status", "due_on"][..]),
            ("ix_invoice_created_by", &["created_by"][..]),
        ] {
            m.create_index(idx(name, "invoice", cols)).await?;
        }

        m.create_table(
            Table::create()
                .table(a("invoice_line"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("invoice_id")))
                .col(integer(a("position")))
                .col(string_len(a("kind"), 16))
                .col(uuid(a("source_id")))
                .col(date(a("work_date")))
                .col(text(a("description")))
                .col(integer_null(a("minutes")))
                .col(big_integer_null(a("rate_cents")))
                .col(big_integer(a("amount_cents")))
                .col(string_len_null(a("task_code"), 4))
                .col(string_len_null(a("activity_code"), 4))
                .col(string_len_null(a("expense_code"), 4))
                .col(uuid_null(a("timekeeper_id")))
                .foreign_key(&mut fk(
                    "fk_invoice_line_invoice",
                    "invoice_line",
                    "invoice_id",
                    "invoice",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_invoice_line_invoice",
            "invoice_line",
            &["invoice_id", "position"],
        ))
        .await?;

        m.create_table(
            Table::create()
                .table(a("payment"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("invoice_id")))
                .col(big_integer(a("amount_cents")))
                .col(string_len(a("currency"), 3))
                .col(string_len(a("method"), 16))
                .col(string_len_null(a("reference"), 200))
                .col(uuid_null(a("recorded_by")))
                .col(timestamp_with_time_zone(a("created_at")))
                .foreign_key(&mut fk(
                    "fk_payment_invoice",
                    "payment",
                    "invoice_id",
                    "invoice",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx(
            "ix_payment_invoice",
            "payment",
            &["invoice_id", "created_at"],
        ))
        .await?;
        m.create_index(idx("ix_payment_created", "payment", &["created_at"]))
            .await?;

        // One row per (client, case): the balance every transfer decrements conditionally.
        m.create_table(
            Table::create()
                .table(a("trust_account"))
                .col(uuid(a("client_id")))
                .col(uuid(a("case_id")))
                .col(big_integer(a("balance_cents")))
                .col(timestamp_with_time_zone(a("updated_at")))
                .primary_key(
                    Index::create()
                        .name("pk_trust_account")
                        .col(a("client_id"))
                        .col(a("case_id")),
                )
                .foreign_key(&mut fk(
                    "fk_trust_account_client",
                    "trust_account",
                    "client_id",
                    "app_user",
                ))
                .foreign_key(&mut fk(
                    "fk_trust_account_case",
                    "trust_account",
                    "case_id",
                    "legal_case",
                ))
                .to_owned(),
        )
        .await?;
        m.create_index(idx("ix_trust_account_case", "trust_account", &["case_id"]))
            .await?;
        m.create_table(
            Table::create()
                .table(a("trust_entry"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("client_id")))
                .col(uuid(a("case_id")))
                .col(string_len(a("kind"), 16))
                .col(big_integer(a("amount_cents")))
                .col(big_integer(a("balance_after_cents")))
                .col(uuid_null(a("invoice_id")))
                .col(uuid_null(a("payment_id")))
                .col(string_len_null(a("reference"), 200))
                .col(uuid_null(a("created_by")))
                .col(timestamp_with_time_zone(a("created_at")))
                .foreign_key(&mut fk(
                    "fk_trust_entry_client",
                    "trust_entry",
                    "client_id",
                    "app_user",
                ))
                .foreign_key(&mut fk(
                    "fk_trust_entry_case",
                    "trust_entry",
                    "case_id",
                    "legal_case",
                ))
                .to_owned(),
        )
        .await?;
        for (name, cols) in [
            ("ix_trust_entry_client", &["client_id", "id"][..]),
            ("ix_trust_entry_case", &["case_id", "id"][..]),
            ("ix_trust_entry_invoice", &["invoice_id"][..]),
        ] {
            m.create_index(idx(name, "trust_entry", cols)).await?;
        }

        // Processed webhook events: the primary key makes a replay a no-op.
        m.create_table(
            Table::create()
                .table(a("payment_webhook_event"))
                .col(string_len(a("id"), 255).primary_key())
                .col(string_len(a("kind"), 100))
                .col(timestamp_with_time_zone(a("received_at")))
                .to_owned(),
        )
        .await
    }
}
