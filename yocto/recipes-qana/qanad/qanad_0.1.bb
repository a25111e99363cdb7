SUMMARY = "QanaEdge skin-lesion classifier daemon (qanad) and CLI (qana)"
DESCRIPTION = "Installs the Native-AOT binaries built by 'make publish', the systemd unit, \
the default configuration and the default model package."
LICENSE = "CLOSED"

# The binaries are built outside BitBake (dotnet publish -r linux-arm64 / linux-x64 with Native AOT); point
# QANA_OUT at out/linux-<arch> and QANA_MODELS at firmware-models/ of a checkout.
QANA_OUT ?= "${TOPDIR}/../qanaedge/out/linux-${@'arm64' if d.getVar('TARGET_ARCH') == 'aarch64' else 'x64'}"
QANA_MODELS ?= "${TOPDIR}/../qanaedge/firmware-models"

# qanad.service and appsettings.json are kept once, in the checkout's systemd/ (the daemon's tests read that
# appsettings.json), and daemon.md in docs/ (the unit's Documentation=); BitBake looks for file:// only under the
# recipe's own folders (files/, qanad/, qanad-0.1/), so without these paths do_fetch finds neither.
FILESEXTRAPATHS:prepend := "${THISDIR}/../../../systemd:${THISDIR}/../../../docs:"
SRC_URI = "file://qanad.service file://appsettings.json file://99-qanad.rules file://daemon.md"
S = "${WORKDIR}"

inherit systemd useradd

SYSTEMD_SERVICE:${PN} = "qanad.service"
SYSTEMD_AUTO_ENABLE = "enable"
USERADD_PACKAGES = "${PN}"
# qanad.service names video, gpio and i2c in SupplementaryGroups=; a group that does not exist stops the unit from
# starting (216/GROUP), and base images create video only. 99-qanad.rules gives gpio and i2c their devices.
GROUPADD_PARAM:${PN} = "--system qanad; --system -f gpio; --system -f i2c"
USERADD_PARAM:${PN} = "--system --no-create-home --home-dir /var/lib/qanad --shell /sbin/nologin -g qanad -G video,gpio,i2c qanad"

# Native AOT output is already stripped of nothing BitBake knows how to debug-split; keep it as built.
INHIBIT_PACKAGE_STRIP = "1"
INHIBIT_PACKAGE_DEBUG_SPLIT = "1"
INSANE_SKIP:${PN} += "already-stripped ldflags"
# .NET's cryptography (SHA-256, package signatures, MQTT TLS) loads OpenSSL's libssl/libcrypto at run time with
# dlopen, which BitBake's shared-library scan does not see.
RDEPENDS:${PN} += "zlib libstdc++ libssl libcrypto"
# System.Device.Gpio's GpioController uses libgpiod's character-device interface (the sysfs fallback needs writes to
# /sys/class/gpio, which the unit's ProtectKernelTunables= forbids): without it the capture button cannot work.
RDEPENDS:${PN} += "libgpiod"

do_install() {
    install -d ${D}${bindir} ${D}${systemd_system_unitdir} ${D}${sysconfdir}/qanad/trust ${D}${datadir}/qanad/firmware-models
    install -m 0755 ${QANA_OUT}/qanad ${D}${bindir}/qanad
    if [ -f ${QANA_OUT}/qana ]; then install -m 0755 ${QANA_OUT}/qana ${D}${bindir}/qana; fi
    install -m 0644 ${WORKDIR}/qanad.service ${D}${systemd_system_unitdir}/qanad.service
    # Readable by the qanad user (it may hold the broker password, so not by everyone).
    install -m 0640 -g qanad ${WORKDIR}/appsettings.json ${D}${sysconfdir}/qanad/appsettings.json
    install -d ${D}${nonarch_base_libdir}/udev/rules.d
    install -m 0644 ${WORKDIR}/99-qanad.rules ${D}${nonarch_base_libdir}/udev/rules.d/99-qanad.rules
    # The page qanad.service's Documentation= names (packaged in ${PN}-doc, as BitBake does with ${docdir}).
    install -d ${D}${docdir}/qanad
    install -m 0644 ${WORKDIR}/daemon.md ${D}${docdir}/qanad/daemon.md
    # The default model: the package named by firmware-models/DEFAULT (or the single *.qana), installed as default.qana.
    if [ -f ${QANA_MODELS}/DEFAULT ]; then
        model="${QANA_MODELS}/$(head -n1 ${QANA_MODELS}/DEFAULT)"
    else
        model="$(ls ${QANA_MODELS}/*.qana | head -n1)"
    fi
    install -m 0644 "$model" ${D}${datadir}/qanad/firmware-models/default.qana
}

FILES:${PN} += "${systemd_system_unitdir}/qanad.service ${sysconfdir}/qanad ${datadir}/qanad ${nonarch_base_libdir}/udev/rules.d/99-qanad.rules"
CONFFILES:${PN} = "${sysconfdir}/qanad/appsettings.json"
