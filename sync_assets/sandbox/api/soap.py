"""SOAP ``login()`` (``POST /services/Soap/u|c/NN.0``): a session for any user of the org.

The answers are the partner/enterprise WSDL's ``loginResponse`` and, for wrong credentials, the
``INVALID_LOGIN`` fault with HTTP 500, as captured from real orgs (test fixtures of the forrest
PHP client and others). simple-salesforce reads ``sessionId`` and ``serverUrl`` from the answer.
"""

import xml.etree.ElementTree as ET
from collections.abc import Callable
from xml.sax.saxutils import escape

from sync_assets.sandbox.api.messages import Request, Response, allow
from sync_assets.sandbox.auth import OrgIdentity, TokenStore
from sync_assets.sandbox.login import Logins
from sync_assets.sandbox.org import OrgSpec
from sync_assets.sandbox.users import SandboxUser

XML = "text/xml; charset=utf-8"
_NAMESPACES = {"u": "urn:partner.soap.sforce.com", "c": "urn:enterprise.soap.sforce.com"}
_SESSION_SECONDS = 7200
_INVALID_LOGIN = (
    '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
    'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns:sf="urn:fault.partner.soap.sforce.com" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body><soapenv:Fault>'
    "<faultcode>sf:INVALID_LOGIN</faultcode><faultstring>INVALID_LOGIN: Invalid username, "
    "password, security token; or user locked out.</faultstring><detail>"
    '<sf:LoginFault xsi:type="sf:LoginFault"><sf:exceptionCode>INVALID_LOGIN</sf:exceptionCode>'
    "<sf:exceptionMessage>Invalid username, password, security token; or user locked out."
    "</sf:exceptionMessage></sf:LoginFault></detail></soapenv:Fault></soapenv:Body>"
    "</soapenv:Envelope>"
)


def _login_fields(body: bytes) -> tuple[str, str] | None:
    """``username`` and ``password`` of a ``login`` call, whatever their namespace prefix."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError:
        return None
    found = {e.tag.rpartition("}")[2]: e.text or "" for e in root.iter()}
    if "login" not in found:
        return None
    return found.get("username", ""), found.get("password", "")


class SoapResources:
    def __init__(
        self,
        identity: OrgIdentity,
        tokens: TokenStore,
        logins: Logins,
        instance_url: Callable[[], str],
        org: OrgSpec,
    ) -> None:
        self.identity = identity
        self.tokens = tokens
        self.logins = logins
        self.instance_url = instance_url
        self.org = org

    def login(self, request: Request, wsdl: str, version: str) -> Response:
        """Answer ``/services/Soap/{wsdl}/{version}`` (``wsdl`` u: partner, c: enterprise)."""
        allow(request, "POST")
        fields = _login_fields(request.body)
        user = self.logins.password(*fields) if fields is not None else None
        if user is None:
            return Response(500, _INVALID_LOGIN.encode(), XML)
        token, _ = self.tokens.issue(user.id)
        return Response(200, self._login_response(user, token, wsdl, version).encode(), XML)

    def _login_response(self, user: SandboxUser, token: str, wsdl: str, version: str) -> str:
        org_id = self.identity.org_id
        instance = self.instance_url()
        currencies = self.org.currencies
        corporate = currencies.corporate if currencies is not None else "USD"
        info = {
            "currencySymbol": "$" if corporate == "USD" else corporate,
            "orgDefaultCurrencyIsoCode": corporate,
            "organizationId": org_id,
            "organizationMultiCurrency": str(currencies is not None).lower(),
            "organizationName": self.org.name,
            "sessionSecondsValid": str(_SESSION_SECONDS),
            "userEmail": user.username,
            "userFullName": user.name,
            "userId": user.id,
            "userLanguage": "en_US",
            "userLocale": "en_US",
            "userName": user.username,
            "userTimeZone": "GMT",
            "userType": "Standard",
        }
        user_info = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in info.items())
        return (
            '<?xml version="1.0" encoding="UTF-8"?><soapenv:Envelope '
            'xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" '
            f'xmlns="{_NAMESPACES[wsdl]}" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"><soapenv:Body>'
            "<loginResponse><result>"
            f"<metadataServerUrl>{instance}/services/Soap/m/{version}/{org_id[:15]}"
            "</metadataServerUrl><passwordExpired>false</passwordExpired>"
            f"<sandbox>false</sandbox><serverUrl>{instance}/services/Soap/{wsdl}/{version}/"
            f"{org_id[:15]}</serverUrl><sessionId>{token}</sessionId><userId>{user.id}</userId>"
            f"<userInfo>{user_info}</userInfo></result></loginResponse></soapenv:Body>"
            "</soapenv:Envelope>"
        )
