"""task heartbeat: when the running job last proved it is alive

Revision ID: rel_0001_task_heartbeat
Revises: a25b1ee9524e
Create Date: 2026-12-01 20:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'rel_0001_task_heartbeat'
down_revision = 'a25b1ee9524e'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sa.DateTime(), nullable=True))


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
