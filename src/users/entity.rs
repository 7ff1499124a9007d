//! Rows of `app_user` and `invitation`. Only the users module touches these tables.

pub mod user {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "app_user")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub name: String,
        pub role: String,
        pub status: String,
        pub phone: Option<String>,
        pub timezone: String,
        pub password_hash: Option<String>,
        pub totp_secret: Option<Vec<u8>>,
        pub totp_enabled: bool,
        pub totp_last_step: Option<i64>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod invitation {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "invitation")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub email: String,
        pub role: String,
        pub case_id: Option<Uuid>,
        pub token_hash: String,
        pub invited_by: Option<Uuid>,
        pub expires_at: DateTimeUtc,
        pub accepted_at: Option<DateTimeUtc>,
        pub accepted_user_id: Option<Uuid>,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
