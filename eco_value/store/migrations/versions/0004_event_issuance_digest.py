"""status events carry the digest of the issuance they create (audit covers issuance totals)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

Existing events keep ``detail_sha256 = ''``; the event hash includes the field only when it is not
empty, so every event stored before this revision verifies unchanged.
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('detail_sha256', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False,
                                      server_default=''))


def downgrade() -> None:
    with op.batch_alter_table('status_events', schema=None) as batch_op:
        batch_op.drop_column('detail_sha256')
