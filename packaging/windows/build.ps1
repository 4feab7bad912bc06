# Build kubetray for Windows (run on Windows; it cannot be built on Linux):
#   powershell -ExecutionPolicy Bypass -File packaging\windows\build.ps1
#     -> packaging\build\dist\kubetray\kubetray.exe (one-folder bundle, windowed, with the .ico)
#     -> packaging\build\kubetray-<version>-windows-x64-setup.exe (Inno Setup 6, when ISCC.exe is found)
# Needs Python 3.10+ (x64) on PATH as `python` (or -Python C:\path\python.exe) and, for the
# installer, Inno Setup 6 (https://jrsoftware.org/isinfo.php).
param(
    [string]$Python = "python",
    [string]$Iscc = "${env:ProgramFiles(x86)}\Inno Setup 6\ISCC.exe"
)
$ErrorActionPreference = "Stop"
$PyInstallerVersion = "6.22.3"
$Repo = (Resolve-Path "$PSScriptRoot\..\..").Path
$Out = if ($env:KUBETRAY_BUILD_DIR) { $env:KUBETRAY_BUILD_DIR } else { "$Repo\packaging\build" }
New-Item -ItemType Directory -Force -Path $Out | Out-Null

function Invoke-Checked([string]$Exe, [string[]]$Arguments) {
    & $Exe @Arguments
    if ($LASTEXITCODE -ne 0) { throw "$Exe $($Arguments -join ' ') failed with exit code $LASTEXITCODE" }
}

$VenvPython = "$Out\venv\Scripts\python.exe"
if (-not (Test-Path $VenvPython)) { Invoke-Checked $Python @("-m", "venv", "$Out\venv") }
Invoke-Checked $VenvPython @("-m", "pip", "install", "-q", "--disable-pip-version-check", "pyinstaller==$PyInstallerVersion")
# kubetray's dependencies, from a copy of the source so pip's build folder stays out of the checkout.
$Src = "$Out\src"
if (Test-Path $Src) { Remove-Item -Recurse -Force $Src }
New-Item -ItemType Directory -Force -Path $Src | Out-Null
foreach ($item in @("pyproject.toml", "README.md", "trayapp", "resources")) {
    Copy-Item -Recurse -Path "$Repo\$item" -Destination $Src
}
Invoke-Checked $VenvPython @("-m", "pip", "install", "-q", "--disable-pip-version-check", $Src)

if (Test-Path "$Out\dist") { Remove-Item -Recurse -Force "$Out\dist" }
Invoke-Checked $VenvPython @("-m", "PyInstaller", "--noconfirm", "--log-level", "WARN",
    "--distpath", "$Out\dist", "--workpath", "$Out\work", "$Repo\packaging\kubetray.spec")
$Exe = "$Out\dist\kubetray\kubetray.exe"
if (-not (Test-Path $Exe)) { throw "PyInstaller did not make $Exe" }
Write-Output $Exe

$Version = (& $VenvPython -c "import trayapp; print(trayapp.__version__)").Trim()
# Inno Setup 6 installed "for me only" (e.g. by winget as a non-admin) lives under LOCALAPPDATA.
$UserIscc = "$env:LOCALAPPDATA\Programs\Inno Setup 6\ISCC.exe"
if (-not (Test-Path $Iscc) -and (Test-Path $UserIscc)) { $Iscc = $UserIscc }
if (Test-Path $Iscc) {
    Invoke-Checked $Iscc @("/Q", "/DAppVersion=$Version", "/DBundleDir=$Out\dist\kubetray", "/O$Out",
        "$Repo\packaging\windows\kubetray.iss")
    Write-Output "$Out\kubetray-$Version-windows-x64-setup.exe"
} else {
    Write-Warning "Inno Setup's ISCC.exe was not found at $Iscc; made the bundle only (pass -Iscc PATH)."
}
