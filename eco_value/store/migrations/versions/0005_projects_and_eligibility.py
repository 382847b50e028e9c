"""projects, project parcels, eligibility lines, issuance verifications; verification approach of issuances

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('projects',
    sa.Column('id', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('developer', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('methodology', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('methodology_code', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('methodology_version', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('start_date', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('crediting_start', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('crediting_end', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('run_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('adcode', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('country', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('location_crs', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('location_wkb', sa.LargeBinary(), nullable=True),
    sa.Column('validation_body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('validation_date', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('description', sa.Text(), nullable=True),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['run_id'], ['runs.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_projects_run_id'), ['run_id'], unique=False)

    op.create_table('project_parcels',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('parcel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('eligible', sa.Boolean(), nullable=False),
    sa.Column('facts_json', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'parcel_id')
    )
    with op.batch_alter_table('project_parcels', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_project_parcels_parcel_id'), ['parcel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_project_parcels_project_id'), ['project_id'], unique=False)

    op.create_table('eligibility_lines',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('parcel_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('rule', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('passed', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('eligibility_lines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_eligibility_lines_parcel_id'), ['parcel_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_eligibility_lines_project_id'), ['project_id'], unique=False)

    op.create_table('issuance_verifications',
    sa.Column('issuance_id', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('body', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('approach', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('report_date', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['issuance_id'], ['issuances.id'], ),
    sa.PrimaryKeyConstraint('issuance_id')
    )
    # empty for every issuance stored before: the issuance digest skips the column while it is empty
    with op.batch_alter_table('issuances', schema=None) as batch_op:
        batch_op.add_column(sa.Column('verification_approach', sqlmodel.sql.sqltypes.AutoString(), nullable=False, server_default=''))


def downgrade() -> None:
    op.drop_table('issuance_verifications')
    # a plain ALTER (SQLite >= 3.35, PostgreSQL): a batch copy of issuances would fail on the rows that reference it
    op.execute("ALTER TABLE issuances DROP COLUMN verification_approach")
    with op.batch_alter_table('eligibility_lines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_eligibility_lines_project_id'))
        batch_op.drop_index(batch_op.f('ix_eligibility_lines_parcel_id'))
    op.drop_table('eligibility_lines')
    with op.batch_alter_table('project_parcels', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_project_parcels_project_id'))
        batch_op.drop_index(batch_op.f('ix_project_parcels_parcel_id'))
    op.drop_table('project_parcels')
    with op.batch_alter_table('projects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_projects_run_id'))
    op.drop_table('projects')
