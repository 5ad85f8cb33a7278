"""task counts, result size and delivery (issue 12: the progress experience)

Revision ID: ux_0001_task_counts
Revises: a25b1ee9524e
Create Date: 2026-12-01 19:50:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'ux_0001_task_counts'
down_revision = 'sec_0001'  # chained at the merge
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('current', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('total', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('result_bytes', sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column('delivery', sa.String(length=16), nullable=True))


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('delivery')
        batch_op.drop_column('result_bytes')
        batch_op.drop_column('total')
        batch_op.drop_column('current')
