"""The UI API's picklist values of a record type (``/ui-api/object-info/{object}/picklist-values/…``).

``…/{recordTypeId}`` answers a Picklist Values Collection (``{"picklistFieldValues": {field: …}}``,
API 42.0+), ``…/{recordTypeId}/{field}`` one field's Picklist Values (41.0+). StageName offers the
record type's sales process, each value with its OpportunityStage attributes (the doc's
misspelled ``picklistAtrributesValueType`` included); other picklists offer all their values.
Shapes: UI API Developer Guide, "Picklist Values" and "Picklist Value" response bodies.
"""

from typing import Any

from sync_assets.sandbox.api.messages import Request, Response, allow, json_response
from sync_assets.sandbox.errors import not_found
from sync_assets.sandbox.ids import to_id18
from sync_assets.sandbox.metadata import Catalog
from sync_assets.sandbox.objects import FieldDef, ObjectDef

_FIRST_VERSION = {True: 41, False: 42}  # one field, all fields


class UiApiResources:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def handle(self, request: Request, parts: list[str]) -> Response:
        """Answer ``/services/data/vNN.0/ui-api/<parts>``."""
        allow(request, "GET")
        if not (
            len(parts) in (4, 5) and parts[0] == "object-info" and parts[2] == "picklist-values"
        ):
            raise not_found()
        one_field = len(parts) == 5
        if int(float(request.api_version)) < _FIRST_VERSION[one_field]:
            raise not_found()
        catalog = self.catalog.for_user(request.user_id)
        sobject = catalog.find(parts[1])
        record_type_id = to_id18(parts[3])
        known = {r.record_type_id for r in sobject.record_types} if sobject else set()
        if sobject is None or record_type_id not in known:
            raise not_found()
        base = (
            f"/services/data/v{request.api_version}/ui-api/object-info/{sobject.name}"
            f"/picklist-values/{record_type_id}"
        )
        if one_field:
            field = sobject.field(parts[4])
            if field is None or field.type != "picklist":
                raise not_found()
            return json_response(self._values(sobject, field, record_type_id, base))
        return json_response(
            {
                "picklistFieldValues": {
                    f.name: self._values(sobject, f, record_type_id, base)
                    for f in sobject.fields
                    if f.type == "picklist"
                }
            }
        )

    def _values(
        self, sobject: ObjectDef, field: FieldDef, record_type_id: str, base: str
    ) -> dict[str, Any]:
        is_stage = sobject.name == "Opportunity" and field.name == "StageName"
        values = self.catalog.sales_processes[record_type_id] if is_stage else field.picklist
        return {
            "controllerValues": {},
            "defaultValue": None,
            "url": f"{base}/{field.name}",
            "values": [
                {
                    "attributes": self._stage_attributes(v) if is_stage else None,
                    "label": v,
                    "validFor": [],
                    "value": v,
                }
                for v in values
            ],
        }

    def _stage_attributes(self, stage: str) -> dict[str, Any]:
        info = self.catalog.stages[stage]
        return {
            "closed": bool(info.closed),
            "defaultProbability": float(info.probability),
            "forecastCategoryName": info.forecast,
            "picklistAtrributesValueType": "OpportunityStage",
            "won": bool(info.won),
        }
