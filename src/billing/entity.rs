//! Rows of the billing tables. Only the billing module touches these.

macro_rules! entity {
    ($module:ident, $table:literal, { $($body:tt)* }) => {
        pub mod $module {
            use sea_orm::entity::prelude::*;

            #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
            #[sea_orm(table_name = $table)]
            pub struct Model { $($body)* }

            #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
            pub enum Relation {}

            impl ActiveModelBehavior for ActiveModel {}
        }
    };
}

entity!(user_rate, "billing_user_rate", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub rate_cents: i64,
    pub updated_at: DateTimeUtc,
});

entity!(case_rate, "billing_case_rate", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub case_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub user_id: Uuid,
    pub rate_cents: i64,
    pub updated_at: DateTimeUtc,
});

entity!(time_entry, "time_entry", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub case_id: Uuid,
    pub timekeeper_id: Uuid,
    pub work_date: Date,
    pub minutes: i32,
    pub rate_cents: i64,
    pub description: String,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    pub billable: bool,
    pub invoice_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

entity!(expense, "expense", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub case_id: Uuid,
    pub incurred_on: Date,
    pub amount_cents: i64,
    pub description: String,
    pub expense_code: Option<String>,
    pub created_by: Uuid,
    pub invoice_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
});

entity!(invoice, "invoice", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub number: String,
    pub year: i32,
    pub seq: i32,
    pub case_id: Uuid,
    pub client_id: Option<Uuid>,
    pub status: String,
    pub issued_on: Date,
    pub due_on: Date,
    pub currency: String,
    pub subtotal_cents: i64,
    pub tax_cents: i64,
    pub total_cents: i64,
    pub paid_cents: i64,
    pub period_start: Option<Date>,
    pub period_end: Option<Date>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub sent_at: Option<DateTimeUtc>,
    pub voided_at: Option<DateTimeUtc>,
    /// Sum of the invoice's adjustments (negative: discounts).
    pub adjustment_cents: i64,
    /// The tax rate the invoice was drafted at.
    pub tax_rate_bps: i32,
});

entity!(invoice_line, "invoice_line", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub position: i32,
    pub kind: String,
    pub source_id: Uuid,
    pub work_date: Date,
    pub description: String,
    pub minutes: Option<i32>,
    pub rate_cents: Option<i64>,
    pub amount_cents: i64,
    pub task_code: Option<String>,
    pub activity_code: Option<String>,
    pub expense_code: Option<String>,
    pub timekeeper_id: Option<Uuid>,
});

entity!(adjustment, "invoice_adjustment", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub applies_to: String,
    pub description: String,
    pub percent_bps: Option<i32>,
    pub amount_cents: i64,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
});

entity!(payment, "payment", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub invoice_id: Uuid,
    pub amount_cents: i64,
    pub currency: String,
    pub method: String,
    pub reference: Option<String>,
    pub recorded_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
});

entity!(trust_account, "trust_account", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub client_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub case_id: Uuid,
    pub balance_cents: i64,
    pub updated_at: DateTimeUtc,
});

entity!(trust_entry, "trust_entry", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub client_id: Uuid,
    pub case_id: Uuid,
    pub kind: String,
    pub amount_cents: i64,
    pub balance_after_cents: i64,
    pub invoice_id: Option<Uuid>,
    pub payment_id: Option<Uuid>,
    pub reference: Option<String>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTimeUtc,
});

entity!(webhook_event, "payment_webhook_event", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub kind: String,
    pub received_at: DateTimeUtc,
});

entity!(reconciliation, "trust_reconciliation", {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub month: String,
    pub period_end: Date,
    pub bank_balance_cents: i64,
    pub journal_balance_cents: i64,
    pub ledgers_total_cents: i64,
    pub currency: String,
    pub note: Option<String>,
    pub created_by: Uuid,
    pub created_at: DateTimeUtc,
});
