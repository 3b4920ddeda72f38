"""A bad LRS input stops site.yml in the checks, naming the variable, before any host changes (changed=0 on
every host): a host name the encoding hosts cannot resolve, a URL that redirects, a CA file that does not exist."""

import pytest

from lablib import lab

pytestmark = pytest.mark.once

CASES = {
    "unresolvable host": (
        ["-e", "xapi_lrs_url=https://lrs-nowhere.invalid:8443/xAPI/statements/"],
        "worker_lrs_url (XAPI_LRS_URL) names the host 'lrs-nowhere.invalid', which encoding cannot resolve "
        "(getent ahosts: exit 2): set xapi_lrs_url to the LRS's name as the encoding hosts resolve it, or fix their DNS"),
    "redirect": (
        ["-e", "xapi_lrs_url={{ lab_lrs_redirect_url }}"],
        "worker_lrs_url (XAPI_LRS_URL) redirects to https://lrs:8443/xAPI/statements/ (HTTP 301): set that URL in "
        "xapi_lrs_url"),
    "missing CA file": (
        ["-e", "xapi_lrs_ca_file=/etc/ssl/no-such-lrs-ca.pem"],
        "worker_lrs_ca_file /etc/ssl/no-such-lrs-ca.pem is not a file on encoding: copy the CA that signed the LRS's "
        "certificate there (PEM), or leave worker_lrs_ca_file empty for the system's CA store"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_lrs_input_stops_the_run_before_any_change_naming_the_variable(case):
    args, message = CASES[case]
    rc, out = lab.run_playbook("playbooks/site.yml", *args)
    assert rc != 0, out[-3000:]
    assert message in " ".join(out.split()), out[-3000:]
    recap = lab.changed_by_host(out)
    assert set(recap) == {"frontal", "encoding"}, recap
    assert set(recap.values()) == {0}, recap
