//! Invoice discounts and surcharges (with the tax rate each invoice was drafted at, so a
//! later adjustment recomputes tax the same way) and the trust accounts' monthly three-way
//! reconciliations.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

fn a(name: &'static str) -> Alias {
    Alias::new(name)
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(a("invoice_adjustment"))
                .col(uuid(a("id")).primary_key())
                .col(uuid(a("invoice_id")))
                .col(string_len(a("applies_to"), 16))
                .col(text(a("description")))
                .col(integer_null(a("percent_bps")))
                // Signed: negative for a discount, positive for a surcharge.
                .col(big_integer(a("amount_cents")))
                .col(uuid(a("created_by")))
                .col(timestamp_with_time_zone(a("created_at")))
                .foreign_key(
                    ForeignKey::create()
                        .name("fk_invoice_adjustment_invoice")
                        .from(a("invoice_adjustment"), a("invoice_id"))
                        .to(a("invoice"), a("id")),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_invoice_adjustment_invoice")
                .table(a("invoice_adjustment"))
                .col(a("invoice_id"))
                .col(a("id"))
                .to_owned(),
        )
        .await?;
        // SQLite adds one column per ALTER TABLE.
        m.alter_table(
            Table::alter()
                .table(a("invoice"))
                .add_column(big_integer(a("adjustment_cents")).default(0))
                .to_owned(),
        )
        .await?;
        m.alter_table(
            Table::alter()
                .table(a("invoice"))
                .add_column(integer(a("tax_rate_bps")).default(0))
                .to_owned(),
        )
        .await?;
        // Invoices drafted before this column: the rate their stored tax implies (tax was
        // round_half_up(subtotal × rate / 10000), so this gives back the whole-bps rate).
        m.get_connection()
            .execute_unprepared(
                "UPDATE invoice SET tax_rate_bps = CAST(ROUND(tax_cents * 10000.0 / subtotal_cents) AS INTEGER)
                 WHERE subtotal_cents > 0 AND tax_cents <> 0",
            )
            .await?;

        m.create_table(
            Table::create()
                .table(a("trust_reconciliation"))
                .col(uuid(a("id")).primary_key())
                .col(string_len(a("month"), 7))
                .col(date(a("period_end")))
                .col(big_integer(a("bank_balance_cents")))
                .col(big_integer(a("journal_balance_cents")))
                .col(big_integer(a("ledgers_total_cents")))
                .col(string_len(a("currency"), 3))
                .col(string_len_null(a("note"), 500))
                .col(uuid(a("created_by")))
                .col(timestamp_with_time_zone(a("created_at")))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("ix_trust_reconciliation_month")
                .table(a("trust_reconciliation"))
                .col(a("month"))
                .col(a("id"))
                .to_owned(),
        )
        .await?;
        // The reconciliation reads each account's balance as of a date.
        m.create_index(
            Index::create()
                .name("ix_trust_entry_account_time")
                .table(a("trust_entry"))
                .col(a("client_id"))
                .col(a("case_id"))
                .col(a("created_at"))
                .to_owned(),
        )
        .await
    }
}
