"""MySQL/MariaDB: one active task per user and kind, without a partial index

MySQL has no partial indexes, so the base migration's `uq_task_one_active_per_user` came out
there as a plain unique index over (user_id, name): one task of each kind per user, ever. Replace
it with a unique index over a generated column that holds user_id while the task is queued or
started and NULL once it ended (a unique index allows any number of NULLs). SQLite and PostgreSQL
keep their partial index: nothing to do there.

Revision ID: scale_0001_mysql_one_active_task
Revises: a25b1ee9524e
"""
import sqlalchemy as sa
from alembic import op

revision = "scale_0001_mysql_one_active_task"
down_revision = "ops_0001_admins_and_retention"  # chained at the merge
branch_labels = None
depends_on = None

ACTIVE_USER = "CASE WHEN status IN ('queued', 'started') THEN user_id END"


def upgrade():
    if op.get_bind().dialect.name != "mysql":
        return
    op.drop_index("uq_task_one_active_per_user", table_name="task")
    op.add_column("task", sa.Column("active_user_id", sa.Integer(), sa.Computed(ACTIVE_USER, persisted=True),
                                    nullable=True))
    op.create_index("uq_task_one_active_per_user", "task", ["active_user_id", "name"], unique=True)


def downgrade():
    if op.get_bind().dialect.name != "mysql":
        return
    op.drop_index("uq_task_one_active_per_user", table_name="task")
    op.drop_column("task", "active_user_id")
    op.create_index("uq_task_one_active_per_user", "task", ["user_id", "name"], unique=True)
