//! Rows of the case tables. Only the cases module touches these.

pub mod legal_case {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "legal_case")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub number: String,
        pub year: i32,
        pub seq: i32,
        pub title: String,
        pub description: String,
        pub practice_area: Option<String>,
        pub priority: String,
        pub status: String,
        pub phase: String,
        pub opened_at: DateTimeUtc,
        pub closed_at: Option<DateTimeUtc>,
        pub statute_of_limitations: Option<Date>,
        pub created_by: Uuid,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod member {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_member")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub case_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        pub role: String,
        pub added_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    /// Columns that triggers keep on each membership row, outside the model so that reading
    /// or adding a membership never touches them. Each is in an index that starts with
    /// `user_id`.
    #[derive(Clone, Copy, Debug, DeriveIden)]
    pub enum Mirror {
        /// Copies of the case's sort keys and status (migration
        /// `m20261203_000002_member_case_order`).
        CaseUpdatedAt,
        CaseOpenedAt,
        CaseStatus,
        /// Copies of the case's phase and priority, carried with the status at the end of
        /// the two page-order indexes so that a filtered walk tests them in the index
        /// (`m20261210_000001_member_case_filters`).
        CasePhase,
        CasePriority,
        /// The member's unread, unhidden messages in the case
        /// (`m20261204_000001_member_counters`).
        UnreadMessages,
        /// The case's billable minutes not yet on an invoice (same migration).
        CaseUnbilledMinutes,
        /// At least the greatest id of the case's live documents, never lower
        /// (`m20261204_000003_member_last_document`).
        CaseLastDocumentId,
    }
}

pub mod timeline {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_timeline")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub case_id: Uuid,
        pub kind: String,
        pub from_value: Option<String>,
        pub to_value: Option<String>,
        pub note: Option<String>,
        pub actor_id: Option<Uuid>,
        pub at: DateTimeUtc,
        pub client_visible: bool,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Each staff member's open deadlines in due order, kept by triggers (migration
/// `m20261204_000002_member_deadlines`): one row per open deadline and staff member of its case.
pub mod member_deadline {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "member_deadline")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_id: Uuid,
        #[sea_orm(primary_key, auto_increment = false)]
        pub due_on: Date,
        #[sea_orm(primary_key, auto_increment = false)]
        pub deadline_id: Uuid,
        pub case_id: Uuid,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod deadline {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_deadline")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub case_id: Uuid,
        pub title: String,
        pub due_on: Date,
        pub kind: String,
        pub created_by: Option<Uuid>,
        pub created_at: DateTimeUtc,
        pub completed_at: Option<DateTimeUtc>,
        pub completed_by: Option<Uuid>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod party {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "case_party")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub case_id: Uuid,
        pub name: String,
        pub normalized_name: String,
        pub kind: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
