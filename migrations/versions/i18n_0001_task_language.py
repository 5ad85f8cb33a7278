"""task language: the launcher's language, so the worker's email and messages use it

Revision ID: i18n_0001
Revises: a25b1ee9524e
Create Date: 2026-12-01 19:50:00

"""
from alembic import op
import sqlalchemy as sa


revision = 'i18n_0001'
down_revision = 'integ_0001_user_post_count'  # chained at the merge
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.add_column(sa.Column('language', sa.String(length=8), nullable=False, server_default='en'))


def downgrade():
    with op.batch_alter_table('task', schema=None) as batch_op:
        batch_op.drop_column('language')
