"""user.is_admin and task.file_deleted_at (operations: admins; export retention)

Revision ID: ops_0001_admins_and_retention
Revises: a25b1ee9524e
"""
from alembic import op
import sqlalchemy as sa


revision = "ops_0001_admins_and_retention"
down_revision = "chaos_0001_task_seq"  # chained at the merge
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.add_column(sa.Column("is_admin", sa.Boolean(), nullable=False, server_default=sa.false()))
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.add_column(sa.Column("file_deleted_at", sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table("task", schema=None) as batch_op:
        batch_op.drop_column("file_deleted_at")
    with op.batch_alter_table("user", schema=None) as batch_op:
        batch_op.drop_column("is_admin")
